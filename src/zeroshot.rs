//! Zero-shot labelling: CLIP's classifier made of texts. Each label is put
//! into a prompt template and embedded; an image's label probabilities are
//! the softmax of its cosine similarities to the prompts times the model's
//! logit scale (`schema/model.md`).

use std::path::Path;

use crate::db::{Db, WriteBatch, WriteOp};
use crate::error::{Error, Result};
use crate::eval::prompt;
use crate::index::distance::dot;
use crate::model::Encoder;
use crate::store::record::Tag;

/// A classifier over a label list.
pub struct ZeroShot {
    labels: Vec<String>,
    prompts: Vec<Vec<f32>>,
    logit_scale: f32,
}

impl ZeroShot {
    /// Embeds `template` filled with each label.
    pub fn new(encoder: &Encoder, labels: &[String], template: &str) -> Result<ZeroShot> {
        if labels.is_empty() {
            return Err(Error::InvalidParameter {
                name: "labels",
                value: "[]".into(),
                expected: "at least one label",
            });
        }
        let prompts: Vec<String> = labels.iter().map(|l| prompt(template, l)).collect();
        let prompts =
            encoder.embed_texts(&prompts.iter().map(String::as_str).collect::<Vec<_>>())?;
        Ok(ZeroShot {
            labels: labels.to_vec(),
            prompts,
            logit_scale: encoder.logit_scale(),
        })
    }

    /// Every label with its probability for an image vector, most likely first.
    pub fn classify(&self, vector: &[f32]) -> Vec<Tag> {
        let logits: Vec<f32> = self
            .prompts
            .iter()
            .map(|p| self.logit_scale * dot(vector, p))
            .collect();
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let exp: Vec<f32> = logits.iter().map(|l| (l - max).exp()).collect();
        let total: f32 = exp.iter().sum();
        let mut tags: Vec<Tag> = self
            .labels
            .iter()
            .zip(exp)
            .map(|(label, e)| Tag {
                label: label.clone(),
                score: e / total,
            })
            .collect();
        tags.sort_by(|a, b| b.score.total_cmp(&a.score));
        tags
    }

    /// The labels of an image file.
    pub fn classify_file(&self, encoder: &Encoder, path: &Path) -> Result<Vec<Tag>> {
        Ok(self.classify(&encoder.embed_image_file(path)?))
    }
}

/// Options of [`Db::tag`].
#[derive(Clone, Debug, PartialEq)]
pub struct TagOptions {
    /// The prompt template; `{}` marks the label. Default `"a photo of a {}."`.
    pub template: String,
    /// How many labels each image keeps at most. Default 1.
    pub top: usize,
    /// Labels under this probability are not kept. Default 0.
    pub min_score: f32,
}

impl Default for TagOptions {
    fn default() -> TagOptions {
        TagOptions {
            template: crate::eval::DEFAULT_TEMPLATE.into(),
            top: 1,
            min_score: 0.0,
        }
    }
}

impl Db {
    /// Labels every image zero-shot: each keeps its `top` most likely labels
    /// (at least `min_score`) as its tags, replacing its previous tags.
    /// Returns the number of images tagged.
    pub fn tag(&self, encoder: &Encoder, labels: &[String], options: &TagOptions) -> Result<usize> {
        self.check_space(encoder.space())?;
        let classifier = ZeroShot::new(encoder, labels, &options.template)?;
        let ids: Vec<_> = self
            .records()
            .map(|r| r.map(|r| r.id))
            .collect::<Result<_>>()?;
        for chunk in ids.chunks(512) {
            let mut batch = WriteBatch::new();
            for &id in chunk {
                let Some(vector) = self.vector(id) else {
                    continue;
                };
                let tags = classifier
                    .classify(&vector)
                    .into_iter()
                    .take(options.top)
                    .filter(|t| t.score >= options.min_score)
                    .collect();
                batch.push(WriteOp::SetTags { id, tags });
            }
            self.write(encoder.space(), batch)?;
        }
        Ok(ids.len())
    }
}
