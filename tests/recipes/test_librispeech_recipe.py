"""recipes/librispeech/run.sh after its downloads: the synthetic corpus placed in
LibriSpeech layout stands for the subsets, a CMUdict-made lexicon in LibriSpeech's
format and gzipped ARPAs (a 2-gram for the graph, a 3-gram for rescoring) stand for
OpenSLR's files; the recipe runs with --download false from the data dirs to DNN
decoding and rescoring (the later stages are the same shared code the synthetic
recipe's test runs)."""

from __future__ import annotations

import gzip
import os
import subprocess
from pathlib import Path

import yaml

from tests.recipes import RECIPE_MARKS, REPO

RECIPE = REPO / "recipes" / "librispeech" / "run.sh"
SYNTH_CONF = REPO / "recipes" / "synth" / "conf"

pytestmark = RECIPE_MARKS


def sh(*args: str | Path) -> subprocess.CompletedProcess:
    out = subprocess.run([str(a) for a in args], capture_output=True, text=True,
                         env={**os.environ, "PYTHONUNBUFFERED": "1"})  # fmt: skip
    assert out.returncode == 0, f"{args[:3]}: {out.stderr[-4000:]}"
    return out


def test_librispeech_recipe_post_download_stages(tmp_path):
    corpus, lm_dir, work = tmp_path / "LibriSpeech", tmp_path / "lm", tmp_path / "work"
    sh("asr-distill", "make-synth-corpus", "--out", corpus, "--hours", "0.05", "--seed", "3",
       "--nj", "2", "--lm-max-sentences", "1500")  # fmt: skip
    # The "downloads": lexicon.txt lines 'WORD PH1 PH2 ...' with stress digits, as
    # LibriSpeech's, for the corpus's words; a gzipped 2-gram ARPA with <UNK>.
    sh("asr-distill", "prepare-librispeech", "--corpus-dir", corpus, "--subset", "train",
       "--out", tmp_path / "d_train")  # fmt: skip
    sh("asr-distill", "prepare-dict", "--keep-stress", "--extra-text", corpus / "lm_text.txt",
       tmp_path / "d_train", tmp_path / "dict")  # fmt: skip
    lm_dir.mkdir()
    lexicon = [ln for ln in (tmp_path / "dict" / "lexicon.txt").read_text().splitlines()
               if not ln.startswith("<UNK>")]  # fmt: skip
    (lm_dir / "librispeech-lexicon.txt").write_text("\n".join(lexicon) + "\n")
    lexicon_file = lm_dir / "librispeech-lexicon.txt"
    for order, name in ((2, "lm.arpa.gz"), (3, "lm3.arpa.gz")):
        sh("asr-distill", "train-lm", "--order", order, "--unk-symbol", "<UNK>", "--vocab",
           lexicon_file, corpus / "lm_text.txt", tmp_path / f"lm_train{order}")  # fmt: skip
        with gzip.open(lm_dir / name, "wb") as f:
            f.write((tmp_path / f"lm_train{order}" / "lm.arpa").read_bytes())

    conf = yaml.safe_load((SYNTH_CONF / "tiny.yaml").read_text())
    conf.update(lm_file="lm.arpa.gz", rescore_lm_file="lm3.arpa.gz", mono_shortest=1000)
    (tmp_path / "conf.yaml").write_text(yaml.safe_dump(conf))
    out = sh("bash", RECIPE, "--download", "false", "--corpus-dir", tmp_path,
             "--lm-dir", lm_dir, "--work-dir", work, "--conf", tmp_path / "conf.yaml",
             "--dnn-conf", SYNTH_CONF / "dnn_tiny.yaml", "--train-set", "train",
             "--dev-set", "dev", "--test-set", "test", "--nj", "2",
             "--stop-stage", "12")  # fmt: skip
    for stage in range(13):
        assert f"Stage {stage}:" in out.stderr, f"stage {stage} did not run"
    data, exp = work / "data", work / "exp"
    assert "ppl=" in (work / "dev_perplexity.txt").read_text()
    words = set((data / "lang" / "words.txt").read_text().split()[::2])
    assert {"<UNK>", "#0"} <= words and len(words) > 100
    num_utts = len((data / "train" / "text").read_text().splitlines())
    assert conf["gmm_targets"] == "tri3b"  # the DNN targets: tri3b alignments
    failed = (exp / "tri3b_ali_train" / "failed.txt").read_text().split()
    assert len((exp / "tri3b_ali_train" / "pdf.ark").read_bytes()) > 0 and len(failed) < num_utts
    for m in ("tri1", "tri3b", "dnn"):
        assert (exp / m / "decode_test" / "best_wer").read_text().startswith("%WER")
    # the DNN's lattices rescored from the graph's LM to the 3-gram (Kaldi's tgsmall ->
    # tgmed), test at dev's setting
    rescored = exp / "dnn" / "decode_test_rescored"
    assert (rescored / "best_wer").read_text().startswith("%WER")
    assert "lm3.arpa.gz" in (rescored / "config.yaml").read_text()
