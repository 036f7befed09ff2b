//! Exact-match accuracy of a task run on held-out examples. Teacher-forced: each example's
//! prompt + answer + "\n" is one row of a batched forward pass, and it is an exact match iff the
//! argmax at every answer position is the answer's next token, which is what greedy decoding
//! gives when every earlier token is right. One forward pass per B examples instead of a decode
//! per token; it also marks each answer token right or wrong. Where the tokenizer does not split
//! prompt + answer at the boundary (a BPE merging across it) or the line is longer than the
//! context, that example is decoded greedily instead.

use serde::{Deserialize, Serialize};

use super::Run;
use crate::data::Task;
use crate::generate::SampleConfig;
use crate::Result;

/// One held-out example as the model answered it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scored {
    pub prompt: String,
    pub answer: String,
    /// The answer's tokens (its last the newline), as text.
    pub tokens: Vec<String>,
    /// The model's token at each answer position, as text.
    pub predicted: Vec<String>,
    /// Whether each of `predicted` is the answer's token there.
    pub right: Vec<bool>,
    pub exact: bool,
}

/// The held-out examples of one evaluation, scored.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TaskScore {
    pub examples: Vec<Scored>,
}

impl TaskScore {
    /// The fraction of exact matches, in [0, 1] (0 with no examples).
    pub fn accuracy(&self) -> f32 {
        let exact = self.examples.iter().filter(|e| e.exact).count();
        exact as f32 / self.examples.len().max(1) as f32
    }
}

/// An example tokenized for teacher forcing: the whole line's ids and where the answer starts.
struct Line {
    ids: Vec<u32>,
    prompt_len: usize,
}

/// The index of the largest of `row` (the first where several are).
fn argmax(row: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &x) in row.iter().enumerate() {
        if x > row[best] {
            best = i;
        }
    }
    best as u32
}

impl Run {
    /// Scores `n` held-out examples of `task`: teacher-forced where the tokenizer splits the
    /// line at the answer, greedily decoded otherwise (see the module's note).
    pub async fn task_score(&mut self, task: &Task, n: usize) -> Result<TaskScore> {
        let held = task.held_out(n, self.cfg.seed);
        let mut lines = Vec::with_capacity(held.len());
        for (prompt, answer) in &held {
            lines.push(self.split_line(prompt, answer)?);
        }
        let forced: Vec<usize> = (0..held.len()).filter(|&i| lines[i].is_some()).collect();
        let mut predicted: Vec<Vec<u32>> = vec![vec![]; held.len()];
        for chunk in forced.chunks(self.trainer.fwd.b) {
            let rows: Vec<&Line> = chunk.iter().filter_map(|&i| lines[i].as_ref()).collect();
            for (&i, got) in chunk.iter().zip(self.teacher_forced(&rows).await?) {
                predicted[i] = got;
            }
        }
        let mut examples = Vec::with_capacity(held.len());
        for (i, (prompt, answer)) in held.into_iter().enumerate() {
            let scored = match &lines[i] {
                Some(line) => self.scored(prompt, answer, &line.ids[line.prompt_len..], &predicted[i], None)?,
                None => self.greedy_scored(prompt, answer).await?,
            };
            examples.push(scored);
        }
        Ok(TaskScore { examples })
    }

    /// prompt + answer + "\n" as ids, split at the answer, if the tokenizer splits it there, the
    /// answer ends in the newline greedy decoding stops at, and the line fits the context.
    fn split_line(&self, prompt: &str, answer: &str) -> Result<Option<Line>> {
        let tok = &self.tokenizer;
        let ids = tok.encode(&format!("{prompt}{answer}\n"))?;
        let (p, a, newline) = (tok.encode(prompt)?, tok.encode(&format!("{answer}\n"))?, tok.encode("\n")?);
        let splits =
            !p.is_empty() && ids.len() == p.len() + a.len() && ids[..p.len()] == p[..] && ids[p.len()..] == a[..];
        let ends = newline.len() == 1 && a.last() == newline.first();
        let fits = ids.len() <= self.trainer.fwd.t + 1;
        Ok((splits && ends && fits).then_some(Line { ids, prompt_len: p.len() }))
    }

    /// One forward pass over up to B lines (a row each): the argmax at each answer position.
    async fn teacher_forced(&self, rows: &[&Line]) -> Result<Vec<Vec<u32>>> {
        let f = &self.trainer.fwd;
        let (t, v) = (f.t, self.cfg.model.vocab_size);
        let mut ids = vec![0u32; f.b * t];
        for (r, line) in rows.iter().enumerate() {
            let inputs = &line.ids[..line.ids.len() - 1];
            ids[r * t..r * t + inputs.len()].copy_from_slice(inputs);
        }
        let model = &self.trainer.model;
        model.forward(f, &ids, None)?;
        let gpu = &model.kernels.gpu;
        // small logits are read back at once; large ones (a big vocabulary) row by row
        let all = if f.b * t * v <= 1 << 22 { Some(gpu.read(&f.acts.logits).await?) } else { None };
        let mut out = Vec::with_capacity(rows.len());
        for (r, line) in rows.iter().enumerate() {
            let (first, count) = (r * t + line.prompt_len - 1, line.ids.len() - line.prompt_len);
            let logits = match &all {
                Some(all) => all[first * v..(first + count) * v].to_vec(),
                None => gpu.read_range(&f.acts.logits, first * v, count * v).await?,
            };
            out.push(logits.chunks(v).map(argmax).collect());
        }
        Ok(out)
    }

    /// An example scored from its answer's ids and the model's; `text` is the decoded answer
    /// where greedy decoding gave one (an exact match is then its text, as before).
    fn scored(&self, prompt: String, answer: String, want: &[u32], got: &[u32], text: Option<&str>) -> Result<Scored> {
        let piece = |id: &u32| self.tokenizer.decode(&[*id]);
        let tokens = want.iter().map(piece).collect::<Result<Vec<_>>>()?;
        let predicted = got.iter().map(piece).collect::<Result<Vec<_>>>()?;
        let right: Vec<bool> = (0..want.len()).map(|i| got.get(i) == Some(&want[i])).collect();
        let exact = match text {
            Some(text) => text.trim_end_matches('\n') == answer,
            None => got.len() == want.len() && right.iter().all(|&r| r),
        };
        Ok(Scored { prompt, answer, tokens, predicted, right, exact })
    }

    /// An example decoded greedily until the newline (or one token past the answer's length).
    pub async fn greedy_scored(&mut self, prompt: String, answer: String) -> Result<Scored> {
        let newline = self.tokenizer.encode("\n")?.first().copied();
        let ids = self.tokenizer.encode(&prompt)?;
        let want = self.tokenizer.encode(&format!("{answer}\n"))?;
        let max = want.len().max(answer.len() + 1);
        let decoder = &mut self.decoder;
        decoder.weights_changed();
        let out = decoder.generate(&self.trainer.model, &ids, &SampleConfig::greedy(max), newline, |_| true).await?;
        let text = self.tokenizer.decode(&out)?;
        self.scored(prompt, answer, &want, &out, Some(&text))
    }
}
