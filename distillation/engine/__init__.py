"""Engine of the distillation app: pure computation (torch, llama.cpp), no Django.

The call sequence a build follows, module by module:

* :mod:`.families` — the teacher's shape (:class:`~.families.TeacherArch`); llama only for now, other families
  refused with what they are;
* :mod:`.importance` — :func:`~.importance.compute_importance`: block influence and skip loss per layer, head
  contribution and KV-group mask loss, Wanda scores per MLP neuron; :func:`~.importance.magnitude_report` for the
  weights-only baseline;
* :mod:`.recipes` — the recipe document, :func:`~.recipes.validate`, :func:`~.recipes.estimate`,
  :func:`~.recipes.propose` (75 / 55 / 40 %), design document 004's strategies and the baselines;
* :mod:`.pruning` — :func:`~.pruning.prune`: a smaller ``LlamaForCausalLM`` sliced from the teacher;
* :mod:`.calibration` — :func:`~.calibration.teacher_targets` (top-k, cached) and :func:`~.calibration.heal`
  (distillation, checkpoints, resume);
* :mod:`.export` — the Hugging Face folder, the f16 GGUF (llama.cpp's converter), quantized files;
* :mod:`.evaluation` — perplexity in torch and through llama.cpp, speed, answers, the specialisation index.
"""
