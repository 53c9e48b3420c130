"""Engine of the analysis app: pure computation, no Django imports.

The flow a job drives, module by module:

* :mod:`.hookpoints` — module-name patterns (``model.layers.*.mlp``) → MLP modules; llama only for now;
* :mod:`.capture` — documents → forward passes with hooks → :mod:`.shards` (safetensors, resumable,
  ``manifest.json`` last; :func:`.shards.estimate_capture_bytes` and the free-disk check before starting);
* :mod:`.transcoders` — skip transcoder, transcoder, SAE (``config.json`` + ``model.safetensors``);
* :mod:`.training` — coders trained side by side from shards (or with the forward pass in the loop);
* :mod:`.metrics` — FVU / L0 / dead fraction on held-out tokens, KL and CE increase with MLPs replaced;
* :mod:`.features`, :mod:`.logit_lens` — per-feature statistics, top contexts, histograms, neuron links,
  the test box, the logit lens;
* :mod:`.export` — circuit-tracer transcoder sets and SAELens folders.

Long functions take ``progress(done, total, **metrics)`` and ``should_stop()`` callables.
"""
