"""The four transformers presets against transformers itself (skipped where it is not installed;
``.ci/install-reference-libraries`` installs it): for small configs and two seeds, the replay's
state_dict equals ``torch.manual_seed(seed); Ref(Config(**config)).state_dict()`` key for key, in
order, in dtype and bytes (also cast to bfloat16), ties the same keys, and loads strictly into the
reference; the configs the reference refuses are refused naming the field."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

transformers = pytest.importorskip("transformers")

import torch  # noqa: E402

from service.presets import PRESETS, ConfigError  # noqa: E402
from service.presets.replay import meta_entries, replay  # noqa: E402

SEEDS = (0, 2**32 + 1)

REFERENCES = {
    "transformers/GPT2LMHeadModel": ("GPT2LMHeadModel", "GPT2Config"),
    "transformers/BertModel": ("BertModel", "BertConfig"),
    "transformers/LlamaForCausalLM": ("LlamaForCausalLM", "LlamaConfig"),
    "transformers/ViTModel": ("ViTModel", "ViTConfig"),
}

GPT2 = "transformers/GPT2LMHeadModel"
BERT = "transformers/BertModel"
LLAMA = "transformers/LlamaForCausalLM"
VIT = "transformers/ViTModel"

CASES = [
    (GPT2, "tied", dict(n_layer=2, n_embd=16, n_head=2, vocab_size=40, n_positions=8)),
    (GPT2, "untied-inner-cross", dict(n_layer=1, n_embd=8, n_head=2, vocab_size=21, n_positions=5, n_inner=12,
                                      add_cross_attention=True, tie_word_embeddings=False)),
    (GPT2, "l3-prelu-std", dict(n_layer=3, n_embd=12, n_head=4, vocab_size=17, n_positions=6,
                                activation_function="prelu", initializer_range=0.05)),
    (GPT2, "std0", dict(n_layer=1, n_embd=8, n_head=1, vocab_size=9, n_positions=3, initializer_range=0.0)),
    (LLAMA, "tied-gqa-pad", dict(vocab_size=48, hidden_size=16, intermediate_size=24, num_hidden_layers=2,
                                 num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True,
                                 pad_token_id=3)),
    (LLAMA, "untied-bias-headdim", dict(vocab_size=30, hidden_size=16, intermediate_size=20, num_hidden_layers=1,
                                        num_attention_heads=4, num_key_value_heads=1, head_dim=6,
                                        attention_bias=True, mlp_bias=True, pad_token_id=-1)),
    (LLAMA, "mha-kv3-xielu", dict(vocab_size=25, hidden_size=12, intermediate_size=16, num_hidden_layers=3,
                                  num_attention_heads=4, num_key_value_heads=3, hidden_act="xielu",
                                  rope_parameters={"rope_type": "linear", "factor": 2.0})),
    (BERT, "pad0", dict(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=8)),
    (BERT, "nopad-types3", dict(vocab_size=33, hidden_size=12, num_hidden_layers=2, num_attention_heads=3,
                                intermediate_size=20, max_position_embeddings=7, type_vocab_size=3,
                                pad_token_id=None, initializer_range=0.1)),
    (BERT, "decoder-cross-prelu", dict(vocab_size=20, hidden_size=8, num_hidden_layers=2, num_attention_heads=2,
                                       intermediate_size=12, max_position_embeddings=6, pad_token_id=5,
                                       is_decoder=True, add_cross_attention=True, hidden_act="prelu")),
    (VIT, "square", dict(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                         image_size=16, patch_size=4)),
    (VIT, "rect-nobias-pooler", dict(hidden_size=12, num_hidden_layers=2, num_attention_heads=3,
                                     intermediate_size=20, image_size=[16, 12], patch_size=[8, 4], num_channels=2,
                                     qkv_bias=False, pooler_output_size=10, pooler_act="prelu",
                                     hidden_act="prelu")),
    (VIT, "uneven", dict(hidden_size=18, num_hidden_layers=1, num_attention_heads=4, intermediate_size=8,
                         image_size=10, patch_size=4, initializer_range=0.3)),
]


def _reference(name: str, config: dict, seed: int) -> torch.nn.Module:
    model_cls, config_cls = (getattr(transformers, n) for n in REFERENCES[name])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return model_cls(config_cls(**config))


def _tied_pairs(state: dict[str, torch.Tensor]) -> set[tuple[str, str]]:
    first: dict[int, str] = {}
    pairs = set()
    for key, t in state.items():
        ptr = t.untyped_storage().data_ptr()
        if ptr in first:
            pairs.add((first[ptr], key))
        first.setdefault(ptr, key)
    return pairs


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize(("name", "label", "config"), CASES, ids=[f"{n.split('/')[1]}-{label}" for n, label, _ in CASES])
def test_replay_equals_reference(name, label, config, seed):
    preset = PRESETS[name]
    resolved, _ = preset.resolve(config)
    state, _ = replay(preset, resolved, seed)
    ref_model = _reference(name, config, seed)
    ref = ref_model.state_dict()

    assert list(state) == list(ref)
    for key, want in ref.items():
        got = state[key]
        assert got.dtype == want.dtype, key
        assert got.shape == want.shape, key
        assert torch.equal(got, want), key
        if got.is_floating_point():
            assert torch.equal(got.to(torch.bfloat16), want.to(torch.bfloat16)), key
    assert _tied_pairs(state) == _tied_pairs(ref)
    assert [(e.key, e.shape, e.dtype) for e in meta_entries(preset, resolved)] == [
        (k, tuple(t.shape), str(t.dtype).removeprefix("torch.")) for k, t in ref.items()
    ]
    ref_model.load_state_dict(state, strict=True)


def test_every_config_field_is_a_preset_field():
    """The fields are exactly the config dataclass's own keyword arguments, with its defaults."""
    for name, (_, config_cls) in REFERENCES.items():
        cls = getattr(transformers, config_cls)
        own = {n: f.default for n, f in cls.__dataclass_fields__.items() if n in cls.__annotations__}
        assert PRESETS[name].defaults() == own, name


@pytest.mark.parametrize(
    ("name", "config", "field"),
    [
        (GPT2, dict(n_embd=16, n_head=3, n_layer=1, vocab_size=10, n_positions=4), "n_embd"),
        (GPT2, dict(n_embd=16, n_head=4, n_layer=1, vocab_size=10, n_positions=4, activation_function="nope"),
         "activation_function"),
        (GPT2, dict(n_embd=16.5, n_head=4, n_layer=1, vocab_size=10, n_positions=4), "n_embd"),
        (GPT2, dict(n_embd=16, n_head=4, n_layer=1, vocab_size=10, n_positions=4, eos_token_id="x"), "eos_token_id"),
        (LLAMA, dict(vocab_size=10, hidden_size=16, intermediate_size=8, num_hidden_layers=1, num_attention_heads=3),
         "hidden_size"),
        (LLAMA, dict(vocab_size=10, hidden_size=16, intermediate_size=8, num_hidden_layers=1, num_attention_heads=3,
                     head_dim=8), "hidden_size"),
        (LLAMA, dict(vocab_size=10, hidden_size=16, intermediate_size=8, num_hidden_layers=1, num_attention_heads=4,
                     pad_token_id=10), "pad_token_id"),
        (LLAMA, dict(vocab_size=10, hidden_size=16, intermediate_size=8, num_hidden_layers=1, num_attention_heads=4,
                     rope_parameters={"rope_type": "linear"}), "rope_parameters"),
        (LLAMA, dict(vocab_size=10, hidden_size=16, intermediate_size=8, num_hidden_layers=1, num_attention_heads=4,
                     rope_parameters={"rope_type": "nope"}), "rope_parameters"),
        (LLAMA, dict(vocab_size=10, hidden_size=16, intermediate_size=8, num_hidden_layers=1, num_attention_heads=4,
                     hidden_act="nope"), "hidden_act"),
        (BERT, dict(vocab_size=10, hidden_size=16, num_hidden_layers=1, num_attention_heads=3, intermediate_size=8),
         "hidden_size"),
        (BERT, dict(vocab_size=10, hidden_size=16, num_hidden_layers=1, num_attention_heads=4, intermediate_size=8,
                    add_cross_attention=True), "add_cross_attention"),
        (BERT, dict(vocab_size=10, hidden_size=16, num_hidden_layers=1, num_attention_heads=4, intermediate_size=8,
                    pad_token_id=10), "pad_token_id"),
        (VIT, dict(hidden_size=16, num_hidden_layers=1, num_attention_heads=4, intermediate_size=8, image_size=[16],
                   patch_size=4), "image_size"),
        (VIT, dict(hidden_size=16, num_hidden_layers=1, num_attention_heads=4, intermediate_size=8, image_size=16,
                   patch_size=4, pooler_act="nope"), "pooler_act"),
    ],
)
def test_refuses_what_the_reference_refuses(name, config, field):
    # transformers refuses with KeyError, ValueError, AssertionError, IndexError or huggingface_hub's
    # validation errors, depending on the field and the version: any refusal is the point here
    with pytest.raises(Exception):  # noqa: B017
        _reference(name, config, 0)
    with pytest.raises(ConfigError) as info:
        PRESETS[name].resolve(config)
    assert info.value.field == field


@pytest.mark.parametrize(
    ("name", "config", "needle"),
    [
        (GPT2, dict(n_embd=8, n_head=2, n_layer=1, vocab_size=10, n_positions=4), "bos_token_id"),
        (LLAMA, dict(vocab_size=10, hidden_size=16, intermediate_size=8, num_hidden_layers=1, num_attention_heads=4,
                     num_key_value_heads=3), "num_key_value_heads"),
        (VIT, dict(hidden_size=18, num_hidden_layers=1, num_attention_heads=4, intermediate_size=8, image_size=10,
                   patch_size=4), "num_attention_heads"),
    ],
)
def test_warns_where_the_reference_builds_anyway(name, config, needle):
    _reference(name, config, 0)
    _, warnings = PRESETS[name].resolve(config)
    assert any(needle in w for w in warnings), warnings



def test_the_replays_never_import_transformers():
    """The service answers from the replays alone: building all four loads no transformers module."""
    configs = {name: config for name, _, config in CASES}  # the last case of each preset
    code = (
        "import json, sys; from service.presets import PRESETS; from service.presets.replay import replay\n"
        f"for name, config in json.loads({json.dumps(configs)!r}).items():\n"
        "    replay(PRESETS[name], PRESETS[name].resolve(config)[0], 0)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'transformers'))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
