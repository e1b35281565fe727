//! The transformer's data-parallel trainer ([`SeqTrainer::new_in`] with ranks): 2 and 3 thread ranks, each on its
//! shard of the same global batches, against one process on the whole batch, with and without gradient clipping
//! (clipping sees the averaged gradients, so it must match the one-process clip too); on the interpreter and the CPU.

use super::data_parallel::on_ranks;
use kiln::ir::{Collective, Tensor};
use kiln::nn::{BackendKind, Gpt, GptConfig, Ranks, SeqTrainer};
use kiln::{Adam, DataParallel, Optimizer};
use std::sync::Arc;

const BATCH: usize = 6;
const CONTEXT: usize = 5;
const VOCAB: usize = 7;
const STEPS: usize = 4;

fn model() -> Gpt {
    Gpt::new(GptConfig::new(VOCAB, CONTEXT, 8, 2, 1))
}

fn adamw() -> Optimizer {
    Optimizer::AdamW(Adam {
        lr: 0.01,
        weight_decay: 0.01,
        ..Default::default()
    })
}

/// Step `s`'s global batch of tokens and next-token targets; some targets ignored (-1), the same number per row, as
/// the sort and reverse tasks ignore their prompts.
fn batch(s: usize) -> (Vec<i32>, Vec<i32>) {
    let token = |i: usize| ((i * 7 + s * 13 + i / 3) % VOCAB) as i32;
    let tokens: Vec<i32> = (0..BATCH * CONTEXT).map(token).collect();
    let targets = (0..BATCH * CONTEXT)
        .map(|i| if i % CONTEXT == 0 { -1 } else { token(i + 1) })
        .collect();
    (tokens, targets)
}

type Trained = (Vec<(String, Tensor)>, Vec<f64>);

fn train(trainer: &mut SeqTrainer) -> Trained {
    let losses = (0..STEPS)
        .map(|s| {
            let (tokens, targets) = batch(s);
            trainer.step(&tokens, &targets).unwrap()
        })
        .collect();
    (trainer.parameters().unwrap(), losses)
}

fn one_process(backend: BackendKind, clip: Option<f64>) -> Trained {
    let backend = backend.create().unwrap();
    let mut t = SeqTrainer::new(&model(), BATCH, 2, CONTEXT, &adamw(), clip, &*backend, 7).unwrap();
    train(&mut t)
}

fn rank(backend: BackendKind, clip: Option<f64>, group: Arc<dyn Collective>) -> Trained {
    let backend = backend.create().unwrap();
    let ranks = Ranks {
        group,
        reduce: DataParallel::bucketed(4096),
    };
    let mut t = SeqTrainer::new_in(
        &model(),
        BATCH,
        2,
        CONTEXT,
        &adamw(),
        clip,
        &*backend,
        7,
        Some(&ranks),
    )
    .unwrap();
    train(&mut t)
}

fn bits(t: &Tensor) -> Vec<u32> {
    t.as_f32().unwrap().iter().map(|v| v.to_bits()).collect()
}

#[test]
fn transformer_ranks_match_one_process_on_the_global_batch() {
    for backend in [BackendKind::Interp, BackendKind::Cpu] {
        let unclipped = one_process(backend, None);
        // 0.05 is below the gradients' norm, so clipping scales the steps (checked: the trajectory changes).
        for clip in [None, Some(0.05)] {
            let reference = one_process(backend, clip);
            assert!(reference.1.iter().all(|l| l.is_finite()));
            if clip.is_some() {
                let moved = |t: &Trained| bits(&t.0[0].1);
                assert_ne!(
                    moved(&reference),
                    moved(&unclipped),
                    "the clip changed nothing"
                );
            }
            for ranks in [2, 3] {
                let what = format!("{} backend, clip {clip:?}, {ranks} ranks", backend.name());
                let got = on_ranks(ranks, |g| rank(backend, clip, g));
                for (r, (params, losses)) in got.iter().enumerate() {
                    for (s, (l, want)) in losses.iter().zip(&reference.1).enumerate() {
                        assert!(
                            (l - want).abs() <= 1e-5 + 1e-4 * want.abs(),
                            "{what}: rank {r}, step {s}: loss {l} vs one process's {want}"
                        );
                    }
                    assert_eq!(params.len(), reference.0.len());
                    for (i, (name, want)) in reference.0.iter().enumerate() {
                        let p = &params[i].1;
                        assert_eq!(&params[i].0, name);
                        assert_eq!(bits(p), bits(&got[0].0[i].1), "{what}: rank {r}'s {name}");
                        for (g, w) in p.as_f32().unwrap().iter().zip(want.as_f32().unwrap()) {
                            assert!(
                                (g - w).abs() <= 1e-5 + 1e-4 * w.abs(),
                                "{what}: rank {r}'s {name}: {g} vs one process's {w}"
                            );
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn a_global_batch_that_does_not_split_is_refused_and_steps_check_their_batch() {
    let build = |group: Arc<dyn Collective>| {
        let backend = BackendKind::Interp.create().unwrap();
        let ranks = Ranks {
            group,
            reduce: DataParallel::per_gradient(),
        };
        SeqTrainer::new_in(
            &model(),
            BATCH,
            2,
            CONTEXT,
            &adamw(),
            None,
            &*backend,
            7,
            Some(&ranks),
        )
    };
    // Refused before any collective, so no rank waits for another.
    for e in on_ranks(4, |g| build(g).err().map(|e| e.to_string())) {
        let e = e.expect("6 sequences on 4 ranks");
        assert!(e.contains("does not split into 4 equal shards"), "{e}");
    }
    let mut t = build(Arc::new(kiln::ir::SingleProcess)).unwrap();
    let e = t.step(&[0; 3], &[0; 3]).unwrap_err().to_string();
    assert!(e.contains("6 sequences of 5 tokens"), "{e}");
}
