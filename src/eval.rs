//! Zero-shot evaluation of a model on an ImageFolder (one subfolder per
//! class): how well texts find images and images find their class.
//!
//! Labels are the folder names with `_` read as spaces, put into a prompt
//! template (`"a photo of a {}."` by default, CLIP's). Definitions:
//! - text→image recall@K: the fraction of classes whose prompt ranks at
//!   least one image of that class among its K most similar images;
//! - zero-shot accuracy: the fraction of images whose most similar prompt
//!   is their own class's.

use std::path::{Path, PathBuf};

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::index::distance::dot;
use crate::model::{Encoder, has_image_extension};

/// CLIP's default prompt.
pub const DEFAULT_TEMPLATE: &str = "a photo of a {}.";

/// The K of the recall figures reported.
pub const RECALL_KS: [usize; 3] = [1, 5, 10];

/// What an evaluation found.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct EvalReport {
    /// Classes (subfolders with at least one image).
    pub classes: usize,
    /// Images evaluated.
    pub images: usize,
    /// The prompt template used.
    pub template: String,
    /// Fraction of images whose best prompt is their own class's.
    pub zero_shot_accuracy: f64,
    /// (K, text→image recall@K) for each K of [`RECALL_KS`].
    pub text_to_image_recall: Vec<(usize, f64)>,
}

/// The label a folder name stands for.
pub fn label_of(folder_name: &str) -> String {
    folder_name.replace('_', " ")
}

/// Puts a label into a template (`{}` marks the place; a template without it
/// is followed by the label).
pub fn prompt(template: &str, label: &str) -> String {
    if template.contains("{}") {
        template.replace("{}", label)
    } else {
        format!("{template} {label}")
    }
}

/// Image files of a folder, by extension, sorted.
fn images_in(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(Error::io(dir))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && has_image_extension(p))
        .collect();
    files.sort();
    Ok(files)
}

/// Evaluates `encoder` on the ImageFolder `dir`.
pub fn evaluate_image_folder(encoder: &Encoder, dir: &Path, template: &str) -> Result<EvalReport> {
    let mut class_dirs: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(Error::io(dir))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    class_dirs.sort();
    let mut labels = Vec::new();
    let mut files = Vec::new();
    for class_dir in &class_dirs {
        let images = images_in(class_dir)?;
        if images.is_empty() {
            continue;
        }
        let name = class_dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        for image in images {
            files.push((labels.len(), image));
        }
        labels.push(label_of(&name));
    }

    let preprocessor = encoder.preprocessor();
    let prepared: Vec<Vec<f32>> = files
        .par_iter()
        .map(|(_, path)| Ok(preprocessor.prepare_file(path)?.pixels))
        .collect::<Result<_>>()?;
    let image_vectors = encoder.embed_pixels(&prepared.concat(), prepared.len())?;
    let prompts: Vec<String> = labels.iter().map(|l| prompt(template, l)).collect();
    let text_vectors =
        encoder.embed_texts(&prompts.iter().map(String::as_str).collect::<Vec<_>>())?;

    let correct = files
        .iter()
        .zip(&image_vectors)
        .filter(|((class, _), image)| {
            let best = text_vectors
                .iter()
                .enumerate()
                .max_by(|a, b| dot(image, a.1).total_cmp(&dot(image, b.1)))
                .map(|(i, _)| i);
            best == Some(*class)
        })
        .count();
    let recall = RECALL_KS
        .iter()
        .map(|&k| {
            let hits = text_vectors
                .iter()
                .enumerate()
                .filter(|(class, text)| {
                    let mut ranked: Vec<(f32, usize)> = image_vectors
                        .iter()
                        .zip(&files)
                        .map(|(image, (image_class, _))| (dot(text, image), *image_class))
                        .collect();
                    ranked.sort_by(|a, b| b.0.total_cmp(&a.0));
                    ranked.iter().take(k).any(|(_, c)| c == class)
                })
                .count();
            (k, hits as f64 / labels.len().max(1) as f64)
        })
        .collect();
    Ok(EvalReport {
        classes: labels.len(),
        images: files.len(),
        template: template.to_string(),
        zero_shot_accuracy: correct as f64 / files.len().max(1) as f64,
        text_to_image_recall: recall,
    })
}
