//! The offline fold behind `--keep-closed` ([`crate::analyze_path_bounded`]): once one and
//! a half times `keep_closed` closed connections are held, the oldest beyond `keep_closed`
//! are classified with their hosts' other connections, tallied into [`Released`] and let
//! go.
//!
//! Which records go is decided at the hook from the records alone. The costly part,
//! classifying and tallying (a [`Job`]), changes nothing the analysis reads before the next
//! fold or the end: only how many records are held, which is known without it. With
//! `--threads 2` jobs therefore run on a thread of their own, one after another (a job's
//! client keys depend on what earlier ones released), and a job's kept records go back
//! into the analysis before the next fold or the end needs them. The result is the one a
//! fold in place gives.

// Records stay boxed (~1 KB each): folds move them between lists as pointers.
#![allow(clippy::vec_box)]

use std::net::IpAddr;
use std::sync::mpsc::{self, Receiver, Sender};
use std::thread::{Scope, ScopedJoinHandle};

use rustc_hash::{FxHashMap, FxHashSet};

use crate::analyzer::{Analysis, Held};
use crate::attribute::Released;
use crate::classify::{self, Window};
use crate::observe::Observations;

/// Records with their place among the closed records a fold took.
type Placed = Vec<(usize, Box<Observations>)>;

/// What a fold classifies and tallies: the released connections' hosts' records.
struct Job {
    /// Oldest closed first, then copies of the same hosts' open connections; by id.
    conns: Vec<Box<Observations>>,
    release: FxHashSet<u64>,
    /// The closed records' places, to give back the kept ones in order.
    places: FxHashMap<u64, usize>,
    window: Option<Window>,
}

impl Job {
    /// Classify, tally the released, and give back the kept closed records, placed.
    fn run(self, released: &mut Released) -> Placed {
        // Only classes and client keys are needed: no attribution or report is built.
        let verdicts = classify::classes_after(&self.conns, self.window, &released.prior());
        released.fold_classified(&self.conns, &verdicts, &self.release);
        let (release, places) = (self.release, self.places);
        self.conns
            .into_iter()
            .filter(|o| !release.contains(&o.id))
            .filter_map(|o| places.get(&o.id).map(|&at| (at, o)))
            .collect()
    }
}

/// A fold whose job has not given its records back yet.
struct Pending {
    /// Closed records of hosts with nothing released: kept without classifying.
    uninvolved: Placed,
    /// How many records the job will give back.
    from_job: usize,
}

enum Runner<'scope> {
    InPlace(Released),
    Thread {
        jobs: Sender<Job>,
        kept: Receiver<Placed>,
        tallier: ScopedJoinHandle<'scope, Released>,
    },
}

/// The fold, called at every hook of the analysis.
pub(crate) struct Folder<'scope> {
    keep_closed: usize,
    runner: Runner<'scope>,
    pending: Option<Pending>,
}

impl<'scope> Folder<'scope> {
    pub(crate) fn in_place(keep_closed: usize) -> Folder<'static> {
        Folder {
            keep_closed,
            runner: Runner::InPlace(Released::default()),
            pending: None,
        }
    }

    /// Jobs on a thread of `scope`'s; in place if no thread can be started.
    pub(crate) fn threaded<'env>(
        scope: &'scope Scope<'scope, 'env>,
        keep_closed: usize,
    ) -> Folder<'scope> {
        let (jobs, job_rx) = mpsc::channel::<Job>();
        let (kept_tx, kept) = mpsc::channel::<Placed>();
        let tallier = std::thread::Builder::new()
            .name("conn-attrib fold".into())
            .spawn_scoped(scope, move || {
                let mut released = Released::default();
                for job in job_rx {
                    if kept_tx.send(job.run(&mut released)).is_err() {
                        break;
                    }
                }
                released
            });
        let runner = match tallier {
            Ok(tallier) => Runner::Thread {
                jobs,
                kept,
                tallier,
            },
            Err(_) => Runner::InPlace(Released::default()),
        };
        Folder {
            keep_closed,
            runner,
            pending: None,
        }
    }

    pub(crate) fn hook(&mut self, held: &mut dyn Held) {
        // A fold concludes everything held, so it waits until half `keep_closed` more are
        // held: each closed connection then takes part in at most three such conclusions.
        // Not twice `keep_closed`: with `--threads 2` the analysis goes on while a job
        // runs, so the records closing meanwhile (up to the next fold's threshold) add to
        // the job's; at 1.5 x the peak is what a fold in place at 2 x held (bench capture
        // doubled: 137 -> 126 MB with two threads, 122 -> 111 MB with one; instructions
        // +0.8%, the folds' extra work partly offset by a final conclusion over fewer).
        let fold_at = fold_threshold(self.keep_closed);
        let out = self
            .pending
            .as_ref()
            .map_or(0, |p| p.uninvolved.len() + p.from_job);
        if held.closed_held() + out < fold_at {
            return;
        }
        let mut closed = held.take_closed();
        if let Some(back) = self.take_back() {
            closed = back.into_iter().chain(closed).collect();
        }
        let (job, uninvolved) = select(closed, held, self.keep_closed);
        match &mut self.runner {
            Runner::InPlace(released) => {
                let kept = in_order(uninvolved, job.run(released));
                held.restore_closed(kept);
            }
            Runner::Thread { jobs, .. } => {
                let from_job = job
                    .places
                    .keys()
                    .filter(|id| !job.release.contains(id))
                    .count();
                let sent = jobs.send(job);
                // The tallier only stops early if it panicked; its join says so.
                if sent.is_ok() {
                    self.pending = Some(Pending {
                        uninvolved,
                        from_job,
                    });
                } else {
                    self.rejoin();
                }
            }
        }
    }

    /// The end: records still out go back into the analysis; the tallies are final.
    pub(crate) fn finish(mut self, analysis: &mut Analysis) -> Released {
        if let Some(back) = self.take_back() {
            analysis.connections.extend(back);
            analysis.connections.sort_by_cached_key(|o| o.id);
        }
        match self.runner {
            Runner::InPlace(released) => released,
            Runner::Thread { jobs, tallier, .. } => {
                drop(jobs);
                join(tallier)
            }
        }
    }

    /// The pending fold's kept records, oldest closed first, once its job gave them back.
    fn take_back(&mut self) -> Option<Vec<Box<Observations>>> {
        let pending = self.pending.take()?;
        let Runner::Thread { kept, .. } = &self.runner else {
            unreachable!("only a threaded fold is left pending");
        };
        match kept.recv() {
            Ok(from_job) => Some(in_order(pending.uninvolved, from_job)),
            Err(_) => self.rejoin(),
        }
    }

    /// The tallier is gone, which only a panic does: raise it here.
    fn rejoin(&mut self) -> ! {
        let runner = std::mem::replace(&mut self.runner, Runner::InPlace(Released::default()));
        if let Runner::Thread { jobs, tallier, .. } = runner {
            drop(jobs);
            join(tallier);
        }
        panic!("the fold's thread stopped without a panic");
    }
}

/// How many closed records are held when a fold starts: 1.5 × `keep_closed` (see
/// [`Folder::hook`]), and at least one more than `keep_closed`, or a fold of a tiny
/// `keep_closed` would release nothing and run at every hook.
fn fold_threshold(keep_closed: usize) -> usize {
    (keep_closed.saturating_mul(3) / 2).max(keep_closed.saturating_add(1))
}

fn join(tallier: ScopedJoinHandle<'_, Released>) -> Released {
    match tallier.join() {
        Ok(released) => released,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

fn in_order(mut kept: Placed, more: Placed) -> Vec<Box<Observations>> {
    kept.extend(more);
    kept.sort_unstable_by_key(|(at, _)| *at);
    kept.into_iter().map(|(_, obs)| obs).collect()
}

/// Of the closed records (all of them, oldest closed first), those beyond the newest
/// `keep_closed` are released, and their hosts' records go into the job with copies of
/// those hosts' open connections; the other hosts' records are kept as they are.
fn select(closed: Vec<Box<Observations>>, held: &dyn Held, keep_closed: usize) -> (Job, Placed) {
    let excess = closed.len().saturating_sub(keep_closed);
    let releasable = || closed[..excess].iter().filter(|o| o.releasable());
    let release: FxHashSet<u64> = releasable().map(|o| o.id).collect();
    // A connection's class and client depend on its client's other connections, all from
    // the same host (client keys and neighbourhoods start with the host): only those
    // hosts' connections need concluding; the rest stay as they are.
    let hosts: FxHashSet<IpAddr> = releasable().map(|o| o.client.ip()).collect();
    let (involved, uninvolved): (Placed, Placed) = closed
        .into_iter()
        .enumerate()
        .partition(|(_, o)| hosts.contains(&o.client.ip()));
    let places: FxHashMap<u64, usize> = involved.iter().map(|(at, o)| (o.id, *at)).collect();
    let mut conns: Vec<Box<Observations>> = involved.into_iter().map(|(_, o)| o).collect();
    conns.extend(held.peek_open(&|info| info.endpoints.iter().any(|e| hosts.contains(&e.ip()))));
    conns.sort_by_cached_key(|o| o.id);
    let job = Job {
        conns,
        release,
        places,
        window: held.window(),
    };
    (job, uninvolved)
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::*;
    use crate::tcp::ConnInfo;

    #[test]
    fn every_fold_releases_something() {
        for keep in [0, 1, 2, 3, 10, 10_000] {
            assert!(fold_threshold(keep) > keep, "keep_closed {keep}");
        }
        assert_eq!(fold_threshold(1), 2);
        assert_eq!(fold_threshold(10_000), 15_000);
    }

    /// Closed records only, as an analysis holds them between packets.
    #[derive(Default)]
    struct Records(Vec<Box<Observations>>);

    impl Held for Records {
        fn closed(&self) -> &[Box<Observations>] {
            &self.0
        }
        fn closed_mut(&mut self) -> &mut Vec<Box<Observations>> {
            &mut self.0
        }
        fn peek_open(&self, _: &dyn Fn(&ConnInfo) -> bool) -> Vec<Box<Observations>> {
            Vec::new()
        }
        fn window(&self) -> Option<Window> {
            None
        }
    }

    /// What a run of folds gives: the ids listed at the end, what was released, and how
    /// many records were held after each hook (counting those a job still has).
    #[derive(Debug, PartialEq)]
    struct Outcome {
        listed: Vec<u64>,
        released: Released,
        held: Vec<usize>,
    }

    /// Closes `per_hook[i]` connections, from three hosts, before the i-th hook.
    fn run(mut folder: Folder<'_>, per_hook: &[usize]) -> Outcome {
        let server: SocketAddr = "10.0.0.9:27017".parse().unwrap();
        let mut records = Records::default();
        let mut id = 0u64;
        let mut held = Vec::new();
        for &n in per_hook {
            for _ in 0..n {
                let client = SocketAddr::from(([10, 0, 0, 1 + (id % 3) as u8], 40_000));
                records
                    .0
                    .push(Box::new(Observations::new(id, client, server)));
                id += 1;
            }
            folder.hook(&mut records);
            let out = folder
                .pending
                .as_ref()
                .map_or(0, |p| p.uninvolved.len() + p.from_job);
            held.push(records.closed_held() + out);
        }
        let mut end = Analysis {
            input: Default::default(),
            warnings: Vec::new(),
            connections: records.0,
            nodes: Default::default(),
            in_flight: Default::default(),
            table: Default::default(),
        };
        let released = folder.finish(&mut end);
        Outcome {
            listed: end.connections.iter().map(|o| o.id).collect(),
            released,
            held,
        }
    }

    #[test]
    fn a_fold_on_its_own_thread_holds_lists_and_releases_what_one_in_place_does() {
        // Uneven bursts: folds come at irregular hooks, and some hooks close nothing
        // while a job is out.
        let per_hook: Vec<usize> = (0..400).map(|i| [0, 1, 5, 2, 0, 9, 3][i % 7]).collect();
        for keep in [1, 2, 7, 50] {
            let in_place = run(Folder::in_place(keep), &per_hook);
            assert!(in_place.released.connections > 0, "keep {keep}: folds ran");
            let threaded =
                std::thread::scope(|scope| run(Folder::threaded(scope, keep), &per_hook));
            assert_eq!(threaded, in_place, "keep {keep}");
        }
    }
}
