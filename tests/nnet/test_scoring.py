"""The one frame-accuracy path: single models, ensembles (combined and per member),
models of other contexts, unlabelled frames left out."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from asr_distill.features.framestore import FrameStore
from asr_distill.features.framestore_build import build_frame_store
from asr_distill.nnet.ensemble import combine_log_probs
from asr_distill.nnet.model import DnnConfig, SpliceDnn
from asr_distill.nnet.scoring import score_store
from tests.nnet.test_train import DIM, PDFS, learnable_utts


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> FrameStore:
    feats, targets = learnable_utts(12, seed=3)
    targets["u000"][:10] = -1  # unlabelled frames are not scored
    path = tmp_path_factory.mktemp("scoring") / "store"
    build_frame_store(path, feats, targets=targets, num_pdfs=PDFS)
    return FrameStore(path)


def models(contexts):
    torch.manual_seed(0)
    return [SpliceDnn(DnnConfig(num_pdfs=PDFS, feat_dim=DIM, left_context=left,
                                right_context=right, hidden_layers=1, hidden_dim=8)).eval()
            for left, right in contexts]  # fmt: skip


def by_utterance(ms, store, combine="arithmetic", weights=None):
    """Reference: utterance by utterance, each model on its own splice."""
    correct = total = ce = 0.0
    member = np.zeros(len(ms))
    w = None if weights is None else torch.tensor(weights)
    for i in range(store.num_utts):
        y = store.utterance_targets(i)
        keep = y >= 0
        z = torch.stack(
            [
                m(store.utterance(i, left=m.config.left_context, right=m.config.right_context))
                for m in ms
            ]
        )
        logp = combine_log_probs(z, combine=combine, weights=w)  # (T, P)
        correct += float((logp.argmax(-1) == y)[keep].sum())
        ce -= float(logp[keep].gather(1, y[keep][:, None]).sum())
        member += (z.argmax(-1) == y)[:, keep].sum(-1).numpy()
        total += int(keep.sum())
    return 100 * correct / total, ce / total, 100 * member / total, int(total)


@torch.no_grad()
@pytest.mark.parametrize("combine", ["arithmetic", "geometric"])
def test_ensemble_of_other_contexts_equals_utterance_by_utterance(store, combine):
    ms = models([(2, 1), (2, 1), (0, 3)])
    got = score_store(ms, store, combine=combine, weights=[0.2, 0.3, 0.5], batch_size=64)
    acc, ce, member, frames = by_utterance(ms, store, combine, [0.2, 0.3, 0.5])
    assert got.frames == frames == store.num_labelled_frames
    assert got.frame_accuracy == pytest.approx(acc)
    assert got.cross_entropy == pytest.approx(ce, rel=1e-5)
    np.testing.assert_allclose(got.member_frame_accuracies, member)


@torch.no_grad()
def test_single_model_is_its_logits_and_shards_add_up(store):
    (m,) = models([(2, 2)])
    got = score_store([m], store, batch_size=50)
    acc, ce, _, frames = by_utterance([m], store)
    assert (got.frames, got.frame_accuracy) == (frames, pytest.approx(acc))
    assert got.cross_entropy == pytest.approx(ce, rel=1e-5)
    shards = [score_store([m], store, batch_size=50, rank=r, world_size=3) for r in range(3)]
    assert sum(s.frames for s in shards) == frames
    assert sum(s.correct for s in shards) == got.correct
    with pytest.raises(ValueError, match="no model"):
        score_store([], store)
