//! The public handles can be shared across threads: checked at compile time.

use imgdb::{Db, Error, SearchOptions, Stats, VerifyReport, WriteBatch};

const fn assert_send_sync<T: Send + Sync>() {}
const fn assert_clone<T: Clone>() {}

const _: () = {
    assert_send_sync::<Db>();
    assert_clone::<Db>();
    assert_send_sync::<Error>();
    assert_send_sync::<SearchOptions>();
    assert_send_sync::<Stats>();
    assert_send_sync::<VerifyReport>();
    assert_send_sync::<WriteBatch>();
};

#[test]
fn handles_are_send_sync() {
    // The checks above run when this file compiles.
}
