# Stages 7-20 of the recipes, the same for every corpus once it has data dirs, a lang
# dir with G (lang_test) and the GMMs of gmm_stages.sh ($gmms, $gmm_targets):
# alignments, graphs, GMM decoding, DNN frame
# stores, the baseline DNN, the teacher ensemble, distillation over temperatures, the
# transfer set and its students, the small-data (Table 5) experiment, specialists
# (optional) and the report.
# Sourced by recipes/*/run.sh after they set: stage stop_stage nj work_dir data splits
# exp conf dnn_conf report_title transfer_sets (data dirs under $data of unlabelled
# audio for the transfer set; may be empty) ($conf is the recipe's preset YAML; the
# keys read below must be in it).

frames=$work_dir/frames
# The preset's keys, read in one go. Students have their own dev-chosen schedule
# (student_*; $dnn_conf's is the baseline's and members'); student_parallel students
# train at once, with frequency masks of student_freq_mask (on their windows; a cache
# holds the teachers' targets of the clean windows), or, with student_view_mask F > 0,
# on student_views masked views of every frame that the teachers labelled (the cache's
# bands of up to F dims; then student_freq_mask must be 0). Seeds of each distilled row
# (Table 1's distilled, transfer and
# pseudo-label students): seed 0 is the student that is decoded; seeds 1..N-1 (dirs
# <name>_seed<s>) add frame accuracies for the rows' mean +- std. The exp dir names
# below are the ones `asr-distill report` reads (asr_distill/report/report.py lists them).
vars=$(yaml_vars "$conf" lmwts gmm_beam gmm_max_active dnn_lmwts dnn_beam dnn_max_active \
  ensemble_members ensemble_parallel temperatures soft_top_k hard_weight distill_lr \
  student_schedule student_epochs student_parallel student_seeds student_freq_mask \
  student_views student_view_mask small_fraction \
  small_epochs small_lr small_temperature small_hard_weight transfer_speeds \
  transfer_temperature transfer_hard_weight transfer_lr pseudo_lr transfer_epochs \
  specialists specialist_epochs specialist_soft_weight specialist_top_n \
  specialist_student_temperature)
eval "$vars"
extra_seeds=$(seq 1 $((student_seeds - 1)))
# The GMM whose alignments are the DNN targets ($gmm_targets, see gmm_stages.sh): its
# model dir (tree, transition model, graph) and the prefix of its alignment dirs.
am=$exp/$gmm_targets
ali=$exp/${gmm_targets}_ali

if run_stage 7; then
  log "Stage 7: $gmm_targets alignments of train/dev/test (the DNN targets); mono vs" \
    "tri1 on dev"
  for s in $splits; do
    asr-distill align --nj "$nj" "$data/${s}_mfcc" "$data/lang" "$am" "${ali}_$s"
  done
  asr-distill align --nj "$nj" "$data/dev_mfcc" "$data/lang" "$exp/mono" "$exp/mono_ali_dev"
fi

if run_stage 8; then
  log "Stage 8: decoding graphs (HCLG) for $gmms"
  # mkgraph runs on one core (OpenFst's composition and determinization): $nj at a time.
  mkgraph_of() { asr-distill mkgraph "$data/lang_test" "$exp/$1" "$exp/$1/graph"; }
  # shellcheck disable=SC2086  # gmms is a list
  run_parallel "$nj" mkgraph_of $gmms
fi

if run_stage 9; then
  log "Stage 9: decode dev and test with $gmms; LM weight chosen on dev"
  for m in $gmms; do
    # dev at every LM weight; test once, at the weight chosen on dev. Lattice beam 6 as
    # Kaldi's steps/decode.sh (its nnet3 decode.sh, and our DNN decodes, use 8)
    for s in dev test; do
      weights=(--lmwts "$lmwts")
      [ "$s" = test ] && weights=(--lmwt-from "$exp/$m/decode_dev")
      asr-distill decode --nj "$nj" "${weights[@]}" --beam "$gmm_beam" --lattice-beam 6 \
        --max-active "$gmm_max_active" "$exp/$m/graph" "$exp/$m" \
        "$data/${s}_mfcc" "$exp/$m/decode_$s"
      if [ "$s" = dev ]; then asr-distill score "$exp/$m/decode_dev" "$data/dev"; fi
    done
    asr-distill score --lmwt-from "$exp/$m/decode_dev" "$exp/$m/decode_test" "$data/test"
  done
fi

if run_stage 10; then
  log "Stage 10: DNN frame stores: fbank + per-speaker CMN, $gmm_targets pdf targets"
  for s in $splits; do
    # Utterances that failed to align are listed: dropped from train; kept unlabelled in
    # dev/test, which are decoded whole.
    bad=(--keep-unaligned)
    [ "$s" = train ] && bad=(--skip-bad)
    asr-distill make-frame-store "${bad[@]}" --targets "${ali}_$s/pdf.ark" \
      --num-pdfs "$(cat "${ali}_train/num_pdfs")" \
      --cmvn-scp "$data/${s}_fbank/cmvn.scp" --utt2spk "$data/${s}_fbank/utt2spk" \
      "$data/${s}_fbank/feats.scp" "$frames/$s"
  done
fi

# decode_dnn NAME [--specialists DIR [--specialist-top-n N]] MODEL...: decode dev and
# test with the DNN(s) (posteriors averaged; or one generalist with its specialists)
# into lattices: dev's LM
# weight and penalty chosen from its lattices, then test searched at dev's LM weight and
# scored at dev's setting. With $rescore_lm (an ARPA), the lattices are rescored with it
# too (decode_{dev,test}_rescored), dev choosing again.
decode_dnn() {
  local name=$1; shift
  local models=() extra=() s search
  while [[ "$1" = --specialist* ]]; do extra+=("$1" "$2"); shift 2; done
  for m in "$@"; do models+=(--dnn "$m"); done
  local dir=$exp/$name
  for s in dev test; do
    search=()
    [ "$s" = test ] && search=(--search-lmwt "$(awk '/^lmwt:/ {print $2}' "$dir/decode_dev/scores.yaml")")
    asr-distill decode --nj "$nj" --lmwts "$dnn_lmwts" "${search[@]}" --beam "$dnn_beam" \
      --max-active "$dnn_max_active" "${models[@]}" "${extra[@]}" "$am/graph" "$am" \
      "$frames/$s" "$dir/decode_$s"
    if [ "$s" = dev ]; then asr-distill score "$dir/decode_dev" "$data/dev"; fi
  done
  asr-distill score --lmwt-from "$dir/decode_dev" "$dir/decode_test" "$data/test"
  if [ -n "${rescore_lm:-}" ]; then
    for s in dev test; do
      asr-distill lm-rescore --nj "$nj" "$first_pass_lm" "$rescore_lm" "$dir/decode_$s" \
        "$dir/decode_${s}_rescored"
    done
    asr-distill score "$dir/decode_dev_rescored" "$data/dev"
    asr-distill score --lmwt-from "$dir/decode_dev_rescored" "$dir/decode_test_rescored" \
      "$data/test"
  fi
}

if run_stage 11; then
  log "Stage 11: baseline hybrid DNN ($dnn_conf)"
  asr-distill train-dnn --config "$dnn_conf" --no-progress "$frames/train" "$frames/dev" "$exp/dnn"
  asr-distill frame-accuracy --dnn "$exp/dnn/final" --out "$exp/dnn/frame_accuracy.yaml" \
    "$frames/train" "$frames/dev" "$frames/test"
fi

if run_stage 12; then
  log "Stage 12: decode dev and test with the DNN ($gmm_targets tree and graph)"
  decode_dnn dnn "$exp/dnn/final"
fi

if run_stage 13; then
  log "Stage 13: teacher ensemble of $ensemble_members DNNs (seeds 1..$ensemble_members)"
  asr-distill train-ensemble --members "$ensemble_members" --parallel "$ensemble_parallel" \
    --config "$dnn_conf" --no-progress "$frames/train" "$frames/dev" "$exp/ensemble"
  load_teachers "$exp"
  asr-distill ensemble-accuracy "${teachers[@]}" "$exp/ensemble/accuracy.yaml" \
    "$frames/dev" "$frames/test"
fi

if run_stage 14; then
  log "Stage 14: decode with the ensemble (posteriors averaged)"
  load_teachers "$exp"
  decode_dnn ensemble "${members[@]}"
fi

if run_stage 15; then
  cache_kind="top-$soft_top_k"; [ "$soft_top_k" = 0 ] && cache_kind="dense"
  log "Stage 15: distillation from the ensemble at T in {$temperatures} ($cache_kind cache)"
  load_teachers "$exp"
  views=()  # masked views labelled by the teachers, or the clean windows
  if [ "$student_view_mask" -gt 0 ]; then
    views=(--views "$student_views" --freq-mask "$student_view_mask")
  fi
  cache_at() {  # T: the teachers' soft targets at T, shared by the students at T
    asr-distill make-soft-targets "${teachers[@]}" --temperature "$1" --top-k "$soft_top_k" \
      "${views[@]}" --no-progress "$frames/train" "$exp/soft_targets_T$1"
  }
  student_at() {  # "T SEED": a student (dir distill_T<T>, seeds > 0 _seed<SEED>), scored
    local t seed dir
    read -r t seed <<< "$1"
    dir=$exp/distill_T$t; [ "$seed" = 0 ] || dir=${dir}_seed$seed
    # The student's learning rate (distill_lr) and schedule are chosen on dev, like T.
    asr-distill distill --config "$dnn_conf" --no-progress --soft-targets \
      "$exp/soft_targets_T$t" "${teachers[@]}" --temperature "$t" --hard-weight "$hard_weight" \
      --lr "$distill_lr" --schedule "$student_schedule" --epochs "$student_epochs" \
      --freq-mask "$student_freq_mask" --seed "$seed" "$frames/train" "$frames/dev" "$dir"
    asr-distill frame-accuracy --dnn "$dir/final" --out "$dir/frame_accuracy.yaml" \
      "$frames/dev" "$frames/test"
  }
  # shellcheck disable=SC2086  # temperatures is a list
  run_parallel "$student_parallel" cache_at $temperatures
  # Seed 0 at every T; T is chosen on its dev frame accuracy (as the report's Table 1
  # does), then seeds 1.. at that T. With one T (chosen on dev beforehand) all seeds
  # train at once.
  runs=()
  for t in $temperatures; do runs+=("$t 0"); done
  read -r -a ts <<< "$temperatures"
  if [ "${#ts[@]}" = 1 ]; then
    for s in $extra_seeds; do runs+=("${ts[0]} $s"); done
  fi
  run_parallel "$student_parallel" student_at "${runs[@]}"
  # shellcheck disable=SC2086
  best_t=$(best_dev_temperature "$exp" $temperatures)
  if [ "${#ts[@]}" -gt 1 ] && [ -n "$extra_seeds" ]; then
    log "Stage 15: more seeds ($extra_seeds) of the student at T=$best_t (best on dev)"
    runs=()
    for s in $extra_seeds; do runs+=("$best_t $s"); done
    run_parallel "$student_parallel" student_at "${runs[@]}"
  fi
  # Only the student of the chosen T, seed 0, is decoded (the temperature table shows
  # WER for it alone), which saves a decode of dev at every LM weight per other T.
  log "Stage 15: T=$best_t has the best dev frame accuracy; decoding its student"
  decode_dnn "distill_T$best_t" "$exp/distill_T$best_t/final"
fi

if run_stage 16; then
  log "Stage 16: transfer set: speed-perturbed copies of train ($transfer_speeds), their" \
    "$gmm_targets alignments, plus unlabelled audio (${transfer_sets:-none}); never dev/test" \
    "speakers or text"
  asr-distill perturb-data-dir --nj "$nj" --speeds "$transfer_speeds" "$data/train" \
    "$data/train_sp"
  extra=(); for s in $transfer_sets; do extra+=("$data/$s"); done
  asr-distill combine-data-dirs --disjoint-from "$data/dev" --disjoint-from "$data/test" \
    "$data/transfer" "$data/train_sp" "${extra[@]}"
  asr-distill compute-feats --kind mfcc --nj "$nj" "$data/train_sp" "$data/train_sp_mfcc"
  asr-distill compute-feats --kind fbank --nj "$nj" "$data/transfer" "$data/transfer_fbank"
  asr-distill align --nj "$nj" "$data/train_sp_mfcc" "$data/lang" "$am" "${ali}_train_sp"
  # Copies the GMM could not align and the unlabelled audio stay in, without labels: the
  # teachers label every frame.
  asr-distill make-frame-store --keep-unaligned --targets "${ali}_train_sp/pdf.ark" \
    --num-pdfs "$(cat "${ali}_train/num_pdfs")" \
    --cmvn-scp "$data/transfer_fbank/cmvn.scp" --utt2spk "$data/transfer_fbank/utt2spk" \
    "$data/transfer_fbank/feats.scp" "$frames/transfer"
fi

if run_stage 17; then
  log "Stage 17: students of the transfer set: soft targets at T=$transfer_temperature, and" \
    "the control with the ensemble's argmax as hard pseudo-labels"
  load_teachers "$exp"
  cache=$exp/soft_targets_transfer_T$transfer_temperature
  asr-distill make-soft-targets "${teachers[@]}" --temperature "$transfer_temperature" \
    --top-k "$soft_top_k" --no-progress "$frames/transfer" "$cache"
  # "NAME SEED LR [--pseudo-labels]": each LR chosen on dev (fair_sweep.sh); seed 0 is
  # decoded, the other seeds are scored by frame accuracy (dirs NAME_seed<SEED>).
  transfer_student() {
    local name seed lr how dir
    read -r name seed lr how <<< "$1"
    dir=$exp/$name; [ "$seed" = 0 ] || dir=${dir}_seed$seed
    # shellcheck disable=SC2086  # how: no option or --pseudo-labels
    asr-distill distill --config "$dnn_conf" --no-progress $how --soft-targets "$cache" \
      "${teachers[@]}" --temperature "$transfer_temperature" \
      --hard-weight "$transfer_hard_weight" --lr "$lr" --epochs "$transfer_epochs" \
      --schedule "$student_schedule" --freq-mask "$student_freq_mask" --seed "$seed" \
      "$frames/transfer" "$frames/dev" "$dir"
    asr-distill frame-accuracy --dnn "$dir/final" --out "$dir/frame_accuracy.yaml" \
      "$frames/dev" "$frames/test"
    if [ "$seed" = 0 ]; then decode_dnn "$name" "$dir/final"; fi
  }
  runs=()
  for seed in 0 $extra_seeds; do
    runs+=("distill_transfer $seed $transfer_lr" "distill_pseudo $seed $pseudo_lr --pseudo-labels")
  done
  run_parallel "$student_parallel" transfer_student "${runs[@]}"
fi

if run_stage 18; then
  log "Stage 18: Table 5, $small_fraction of the training utterances: hard vs soft targets"
  # Hard targets with early stopping on dev (the paper's setting); soft targets at
  # T=$small_temperature (hard weight $small_hard_weight) from the baseline trained on
  # all the data, no early stopping (the last epoch is the result).
  # The paper's setting: no perturbation of the inputs, whatever the preset's models use.
  small=(--config "$dnn_conf" --no-progress --data-fraction "$small_fraction"
         --epochs "$small_epochs" --lr "$small_lr" --schedule constant --freq-mask 0)
  asr-distill train-dnn "${small[@]}" --early-stopping 3 \
    "$frames/train" "$frames/dev" "$exp/small_hard"
  asr-distill distill "${small[@]}" --teacher "$exp/dnn/final" \
    --temperature "$small_temperature" --hard-weight "$small_hard_weight" \
    "$frames/train" "$frames/dev" "$exp/small_soft"
  for run in small_hard:final small_soft:last; do
    asr-distill frame-accuracy --dnn "$exp/${run%%:*}/${run#*:}" \
      --out "$exp/${run%%:*}/frame_accuracy.yaml" --subset "$frames/train" \
      --data-fraction "$small_fraction" --seed 0 "$frames/test"
  done
fi

if run_stage 19 && [ "$specialists" -gt 0 ]; then
  log "Stage 19: the baseline as a generalist with $specialists specialists on the senones" \
    "it confuses (the paper's section 5)"
  asr-distill cluster-senones --num-sets "$specialists" --gmm-dir "$am" \
    --phones "$data/lang/phones.txt" "$exp/dnn/final" "$frames/train" "$exp/senone_sets"
  # The specialists train like the baseline ($dnn_conf), from its weights, for
  # specialist_epochs, with its soft targets (weight specialist_soft_weight).
  asr-distill train-specialists --config "$dnn_conf" --no-progress \
    --epochs "$specialist_epochs" --soft-weight "$specialist_soft_weight" "$exp/dnn/final" \
    "$exp/senone_sets/sets.txt" "$frames/train" "$frames/dev" "$exp/specialists"
  asr-distill specialist-accuracy --top-n "$specialist_top_n" \
    --out "$exp/specialists/accuracy.yaml" "$exp/dnn/final" "$exp/specialists" \
    "$frames/dev" "$frames/test"
  decode_dnn specialists --specialists "$exp/specialists" --specialist-top-n \
    "$specialist_top_n" "$exp/dnn/final"
  if python3 -c "import sys; sys.exit(not float('$specialist_student_temperature') > 0)"; then
    # Beyond the paper: one network distilled from the generalist with its specialists
    # (their combination q, softened to softmax(log q / T)), with the students' settings.
    t=$specialist_student_temperature
    log "Stage 19: a student of the generalist with its specialists at T=$t"
    asr-distill make-soft-targets --teacher "$exp/dnn/final" --specialists "$exp/specialists" \
      --specialist-top-n "$specialist_top_n" --temperature "$t" --top-k "$soft_top_k" \
      --no-progress "$frames/train" "$exp/soft_targets_specialists_T$t"
    dir=$exp/distill_specialists
    asr-distill distill --config "$dnn_conf" --no-progress --soft-targets \
      "$exp/soft_targets_specialists_T$t" --temperature "$t" --hard-weight "$hard_weight" \
      --lr "$distill_lr" --schedule "$student_schedule" --epochs "$student_epochs" \
      "$frames/train" "$frames/dev" "$dir"
    asr-distill frame-accuracy --dnn "$dir/final" --out "$dir/frame_accuracy.yaml" \
      "$frames/dev" "$frames/test"
    decode_dnn distill_specialists "$dir/final"
  fi
fi

if run_stage 20; then
  log "Stage 20: report (Table 1 with the transfer set, temperature sweep, Table 5)"
  asr-distill report --temperatures "$temperatures" --student-seeds "$student_seeds" \
    --title "$report_title" \
    --context "$(date -u +%F), $(nproc) CPU cores, $ensemble_members-model ensemble" \
    "$exp" "$work_dir/report"
fi
