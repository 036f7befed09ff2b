//! The page's run going on, one unit at a time through the shared [`crate::run::Driver`]: a unit
//! of training, or a save on pause and stop; what the driver does posted as the page's events;
//! and what a failure does ([`fail`]: an error, or after a lost device a new one, with the run
//! rebuilt on it from its last checkpoint). A task run's evaluation goes to the page's task view
//! as a `task_eval` ([`task_eval`]).

use crate::run::driver::diverged_message;
use crate::run::format::{checkpoint_files, CORPUS_FILE};
use crate::run::{Run, RunEvent, Status};
use crate::web::held::{Corpus, Training, With};
use crate::web::host::Host;
use crate::web::protocol::{Event, Scope, TrainState};
use crate::web::views::dynamics_event;
use crate::{Error, Result};

/// Posts what the driver did as the page's events; a checkpoint hands out its files (and the
/// corpus the first time).
fn post_run_event(host: &dyn Host, id: &str, corpus: &Corpus, corpus_sent: &mut bool, ev: RunEvent<'_>) -> Result<()> {
    let event = match ev {
        RunEvent::Progress(mut p) => match p.dynamics.take() {
            None => Event::Progress(p),
            Some(d) => {
                host.post(&Event::Progress(p), &[]);
                dynamics_event(d)
            }
        },
        RunEvent::Eval { eval, sample } => Event::Eval {
            step: eval.iter,
            train_loss: eval.train_loss,
            val_loss: eval.val_loss,
            accuracy: eval.accuracy,
            sample,
        },
        RunEvent::Saved { step, checkpoint, metrics } => {
            let mut files = checkpoint_files(checkpoint, metrics);
            if !*corpus_sent {
                files.push((CORPUS_FILE, corpus.text.as_bytes()));
                *corpus_sent = true;
            }
            let names = files.iter().map(|(n, _)| n.to_string()).collect();
            let bytes: Vec<&[u8]> = files.iter().map(|(_, b)| *b).collect();
            let event = Event::Checkpoint { id: id.into(), name: corpus.name.clone(), step, files: names };
            host.post(&event, &bytes);
            return Ok(());
        }
        RunEvent::Recovered { lost_at, step, reason } => Event::Recovered { lost_at, step, reason },
        RunEvent::Diverged { step, loss, lr, saved } => {
            let kept = match saved {
                Some(s) => {
                    format!("the checkpoint of step {s} is kept: resume it with a lower learning rate (e.g. a tenth)")
                }
                None => "start again with a lower learning rate".into(),
            };
            let message = format!("{}; {kept}", diverged_message(step, loss, lr));
            Event::Diverged { id: id.into(), step, saved, lr, message }
        }
        RunEvent::Done { step } => Event::State { state: TrainState::Done, step },
    };
    host.post(&event, &[]);
    Ok(())
}

/// The held-out examples a `task_eval` carries: the first of the evaluation's, the same ones at
/// every evaluation, so the page shows them turning right.
pub const TASK_VIEW_EXAMPLES: usize = 24;

/// The run's last evaluation of its task as the page's `task_eval`, once: the score is taken from
/// the run. None where the run has no task or no evaluation since the last call.
fn task_eval(run: &mut Run) -> Option<Event> {
    let score = run.task_score.take()?;
    let task = run.task.as_ref()?.spec();
    let (accuracy, total) = (score.accuracy(), score.examples.len());
    let mut examples = score.examples;
    examples.truncate(TASK_VIEW_EXAMPLES);
    Some(Event::TaskEval { step: run.step(), task, accuracy, total, examples })
}

/// Saves the run where it is, unless it is saved there already.
pub(crate) async fn save(tr: &mut Training, host: &dyn Host) -> Result<()> {
    let Training { driver, id, corpus, corpus_sent, .. } = tr;
    driver.save(&mut |ev| post_run_event(host, id, corpus, corpus_sent, ev)).await
}

/// One unit of the run the engine holds: training, or saving on pause and stop (once), as the
/// inbox's flags say (`paused`, and `stop` as told once). False when there is nothing to do
/// until the next message.
pub(crate) async fn tick((paused, stop): (bool, bool), w: With<'_>) -> bool {
    let Some(tr) = w.held.training_mut() else { return false };
    if !matches!(tr.state, TrainState::Training | TrainState::Paused) {
        return false;
    }
    let state = if stop {
        TrainState::Stopped
    } else if paused {
        TrainState::Paused
    } else {
        TrainState::Training
    };
    if state == TrainState::Training && tr.state == TrainState::Training {
        let Training { driver, id, corpus, corpus_sent, .. } = &mut *tr;
        let status = driver.advance(&mut |ev| post_run_event(w.host, id, corpus, corpus_sent, ev)).await;
        if let Some(event) = task_eval(&mut driver.run) {
            w.host.post(&event, &[]);
        }
        match status {
            Ok(Status::Running) => {}
            Ok(Status::Done) => tr.state = TrainState::Done,
            Ok(Status::Diverged) => tr.state = TrainState::Stopped,
            Err(e) => fail(Scope::Train, e, w).await,
        }
        return true;
    }
    if state == tr.state {
        return false; // paused, and saved where it paused
    }
    // paused, resumed or stopped: a paused or stopped run is saved where it is (once), so a
    // reload resumes it exactly
    tr.state = state;
    let step = tr.driver.run.step();
    let host = w.host;
    if state != TrainState::Training {
        if let Err(e) = save(tr, host).await {
            fail(Scope::Train, e, w).await;
        }
    }
    host.post(&Event::State { state, step }, &[]);
    true
}

/// Reports an error of `scope`; when the device was lost, first opens a new one and, if there is
/// a run, rebuilds it there from its last checkpoint and goes on (reporting nothing more).
pub(crate) async fn fail(scope: Scope, e: Error, w: With<'_>) {
    let With { session, held, host } = w;
    host.settle().await; // the lost callback may come a turn after the failed readback
    let error = |scope, e: Error| host.post(&Event::Error { scope, message: e.to_string() }, &[]);
    if !session.lost() {
        if let Some(tr) = held.training_mut().filter(|_| scope == Scope::Train) {
            tr.state = TrainState::Stopped;
        }
        return error(scope, e);
    }
    let e = match held.take() {
        Some(mut tr) => {
            let Training { driver, id, corpus, corpus_sent, .. } = &mut *tr;
            match driver.recover(e, &mut |ev| post_run_event(host, id, corpus, corpus_sent, ev)).await {
                Ok(()) => {
                    session.adopt(tr.driver.run.trainer.model.kernels.clone());
                    held.train(tr);
                    return;
                }
                Err(e) => e,
            }
        }
        // an imported model lived on the lost device only
        None => Error::Gpu(format!(
            "{e}; a new GPU device is ready, but the model on the old one is gone: import or train it again"
        )),
    };
    match session.reopen(&e).await {
        Ok(()) => error(scope, e),
        Err(e) => error(Scope::Gpu, e),
    }
}
