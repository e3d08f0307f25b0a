"""Planning: a validated request in, a typed ``Plan`` out (the job, its runner, its limits, whether
it streams), before anything is allocated. No FastAPI here: ``service.api`` parses requests and
turns plans into responses (``service/api/answer.py``).

    tensors.py   /v1/tensor and /v1/tensors: shapes, slices, recipes, limits, provenance
    modules.py   /v1/module: layer stacks checked on ``meta``, overrides, ``tensors``
    layers.py    /v1/layers: the layer catalog, one layer's state_dict described from ``meta``
    models.py    /v1/model: presets, their configs, keys, slices, limits, streaming
    cuts.py      ``slice`` on state_dict keys, for /v1/model and /v1/module
    plan.py      the ``Plan`` every planner returns
"""
