"""The ``initsvc`` command line: fetch writes the API's bytes, errors are one line and exit 1."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import click
import pytest
import safetensors.torch
from click.testing import CliRunner

from service.cli import main
from service.schemas.recipes import RECIPE_MODELS
from tests.conftest import live_server
from tests.torch_reference import as_bytes, reference

ROOT = Path(__file__).resolve().parents[1]


def invoke(*args: str):
    """In-process, for what needs no server (the live server's log would share this stderr)."""
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def initsvc(*args: str, url: str) -> subprocess.CompletedProcess:
    """``initsvc ARGS --url URL`` as a user runs it: its own process, stdout and stderr apart."""
    return subprocess.run([sys.executable, "-m", "service", *args, "--url", url], capture_output=True, cwd=ROOT,
                          timeout=60, env={**os.environ, "PYTHONWARNINGS": "error"})


def text(stream: bytes) -> str:
    return stream.decode()


@pytest.mark.parametrize(
    "shape_args",
    [pytest.param(["--shape", "256", "784"], id="nargs"), pytest.param(["--shape", "256,784"], id="commas"),
     pytest.param(["--shape", "256x784"], id="times")],
)
def test_fetch_writes_the_apis_bytes(server, http, tmp_path, shape_args):
    out = tmp_path / "w.safetensors"
    done = initsvc("fetch", *shape_args, "--scheme", "kaiming_uniform", "--param", "a=2.23606797749979",
                   "--seed", "0", "--device", "cpu", "-o", str(out), url=server.url)
    assert done.returncode == 0, done.stderr
    api = http.post("/v1/tensor", json={"shape": [256, 784], "init": {"scheme": "kaiming_uniform",
                                                                        "a": 2.23606797749979},
                                         "seed": 0, "device": "cpu"})
    assert out.read_bytes() == api.content
    loaded = safetensors.torch.load_file(out)["weight"]
    assert as_bytes(loaded) == as_bytes(reference([256, 784], "kaiming_uniform", {"a": math.sqrt(5)}, seed=0))
    assert text(done.stderr) == f"wrote {out}: {len(api.content)} bytes, seed 0, device cpu\n"


def test_fetch_every_recipe_option(server, tmp_path):
    out = tmp_path / "shard.safetensors"
    done = initsvc("fetch", "--shape", "64", "3", "3", "3", "--scheme", "xavier_uniform", "--gain", "leaky_relu:0.2",
                   "--dtype", "bfloat16", "--device", "cpu", "--seed", "5", "--name", "conv.weight",
                   "--slice", "16:32,:,:,:", "--rng", "torch", "--histogram-bins", "8", "--no-stats", "-o", str(out),
                   "-q", url=server.url)
    assert done.returncode == 0, done.stderr
    assert done.stderr == b"" and done.stdout == b""
    full = reference([64, 3, 3, 3], "xavier_uniform", {"gain": {"nonlinearity": "leaky_relu", "param": 0.2}},
                     "bfloat16", 5)
    assert as_bytes(safetensors.torch.load_file(out)["conv.weight"]) == as_bytes(full[16:32])


def test_fetch_json_prints_stats_without_data(server):
    done = initsvc("fetch", "--shape", "32", "16", "--scheme", "normal", "--param", "std=0.5", "--seed", "3",
                   "--device", "cpu", "--json", url=server.url)
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    expected = reference([32, 16], "normal", {"std": 0.5}, seed=3)
    assert answer["tensors"]["weight"]["stats"]["max"] == expected.max().item()
    assert answer["request"]["seed"] == 3


def test_fetch_to_stdout(server, http):
    done = initsvc("fetch", "--shape", "4,4", "--scheme", "eye", "--seed", "1", "-o", "-", url=server.url)
    assert done.returncode == 0, done.stderr
    assert done.stdout == http.get("/v1/tensor", params={"shape": "4,4", "scheme": "eye", "seed": 1}).content


def test_bad_recipe_exits_1_with_the_servers_message_on_one_line(server):
    done = initsvc("fetch", "--shape", "10", "4", "3", "--scheme", "dirac", "--param", "groups=3", url=server.url)
    assert done.returncode == 1
    assert text(done.stderr) == (
        "InvalidRecipe: body.init.groups: dirac needs shape[0] divisible by groups; got shape[0]=10, groups=3\n"
    )


def test_limit_exits_1_naming_the_variable():
    with live_server(max_elements=100) as small:
        done = initsvc("fetch", "--shape", "64", "64", "--scheme", "zeros", url=small.url)
    assert done.returncode == 1
    assert text(done.stderr) == "TooLarge: shape [64, 64] has 4096 elements; INITSVC_MAX_ELEMENTS is 100\n"


def test_a_refused_connection_names_the_url_and_how_to_start_a_server_at_once():
    with live_server() as gone:
        url = gone.url  # the port is closed once the server has stopped
    for command in (["gain", "relu"], ["fetch", "--shape", "4", "--scheme", "zeros"], ["models"]):
        done = initsvc(*command, url=url)  # the default --retries 3 does not apply to a refused connection
        assert done.returncode == 1
        message = text(done.stderr)
        assert len(message.splitlines()) == 1, message
        assert message.startswith(f"ConnectError: the server is not reachable at {url} ")
        assert "Start one with 'initsvc serve'" in message and "INITSVC_URL" in message


@pytest.mark.parametrize(
    "args",
    [pytest.param(["leaky_relu", "0.2"], id="NAME-PARAM"), pytest.param(["leaky_relu:0.2"], id="NAME:PARAM"),
     pytest.param(["leaky_relu", "--param", "0.2"], id="--param"),
     pytest.param(["leaky_relu:-0.2"], id="negative-NAME:PARAM"),  # slope², so the same gain
     pytest.param(["leaky_relu", "--param", "-0.2"], id="negative--param")],
)
def test_gain_takes_the_parameter_in_each_form(server, args):
    done = initsvc("gain", *args, url=server.url)
    assert done.returncode == 0, done.stderr
    import torch

    assert float(done.stdout) == torch.nn.init.calculate_gain("leaky_relu", 0.2)


def test_gain_prints_the_gain(server):
    done = initsvc("gain", "relu", url=server.url)
    assert done.returncode == 0 and float(done.stdout) == math.sqrt(2)


@pytest.mark.parametrize(
    ("args", "message"),
    [pytest.param(["leaky_relu", "x"], "PARAM", id="not-a-number"),
     pytest.param(["leaky_relu:0.2", "0.3"], "once", id="twice")],
)
def test_gain_refuses_a_bad_or_repeated_parameter(args, message):
    result = invoke("gain", *args, "--url", "http://127.0.0.1:9")
    assert result.exit_code == 2 and message in result.stderr


def test_schemes_lists_every_scheme(server):
    done = initsvc("schemes", url=server.url)
    assert done.returncode == 0
    lines = text(done.stdout).splitlines()
    assert [line.split()[0] for line in lines] == list(RECIPE_MODELS)
    assert any(line.startswith("kaiming_uniform") and "mode=fan_in" in line for line in lines)
    bare = initsvc("schemes", url=server.url.removeprefix("http://"))  # host:port, as curl takes it
    assert bare.returncode == 0 and bare.stdout == done.stdout


def test_fans_and_devices(server):
    done = initsvc("fans", "64", "3", "7", "7", url=server.url)
    assert text(done.stdout) == "fan_in=147 fan_out=3136 receptive_field=49\n"
    done = initsvc("devices", url=server.url)
    assert json.loads(done.stdout)["default"] in ("cpu", "cuda:0")


def test_module_reads_layers_from_a_json_file(server, http, tmp_path):
    layers = tmp_path / "mlp.json"
    layers.write_text(json.dumps([{"type": "Linear", "in_features": 8, "out_features": 4}, {"type": "ReLU"}]))
    out = tmp_path / "mlp.safetensors"
    done = initsvc("module", str(layers), "--seed", "0", "--device", "cpu", "-o", str(out), url=server.url)
    if done.returncode == 1 and text(done.stderr).startswith("InitServiceError: Not Found"):
        pytest.skip("the server has no /v1/module yet")
    assert done.returncode == 0, done.stderr
    api = http.post("/v1/module", json={"layers": json.loads(layers.read_text()), "seed": 0, "device": "cpu"})
    assert out.read_bytes() == api.content
    for option, field in ((["--histogram-bins", "4"], {"histogram_bins": 4}), (["--no-stats"], {"stats": False})):
        done = initsvc("module", str(layers), "--seed", "0", "--device", "cpu", *option, "-o", str(out), url=server.url)
        assert done.returncode == 0, done.stderr
        api = http.post("/v1/module", json={"layers": json.loads(layers.read_text()), "seed": 0, "device": "cpu", **field})
        assert out.read_bytes() == api.content


@pytest.mark.parametrize(
    ("args", "option"),
    [
        pytest.param(["--shape", "3", "--scheme", "normal", "--param", "std"], "--param", id="param-without-value"),
        pytest.param(["--shape", "3", "abc", "--scheme", "normal"], "--shape", id="shape-not-integer"),
        pytest.param(["--shape", "3", "--scheme", "gaussian"], "--scheme", id="unknown-scheme"),
        pytest.param(["--shape", "3", "--scheme", "normal", "--slice", "a:b"], "--slice", id="bad-slice"),
        pytest.param(["--shape", "3", "--scheme", "normal", "--gain", "relu:x"], "--gain", id="bad-gain-param"),
    ],
)
def test_bad_options_are_usage_errors_naming_the_option(args, option):
    result = invoke("fetch", *args, "--url", "http://127.0.0.1:9")
    assert result.exit_code == 2
    assert option in result.stderr


def test_serve_options_set_the_settings_environment(monkeypatch):
    calls = []
    monkeypatch.setattr("service.server.run", lambda settings, **kwargs: calls.append((settings, kwargs)))
    for name in ("INITSVC_DEFAULT_DEVICE", "INITSVC_MAX_ELEMENTS", "INITSVC_SHUTDOWN_TIMEOUT_S"):
        monkeypatch.setenv(name, "placeholder")  # restored after the test
        monkeypatch.delenv(name)
    result = invoke("serve", "--device", "cpu", "--max-elements", "1000", "--shutdown-timeout-s", "12", "--port", "8123")
    assert result.exit_code == 0, result.output
    assert os.environ["INITSVC_DEFAULT_DEVICE"] == "cpu" and os.environ["INITSVC_MAX_ELEMENTS"] == "1000"
    settings, kwargs = calls[0]
    assert settings.shutdown_timeout_s == 12 and settings.max_elements == 1000 and kwargs["port"] == 8123


def test_serve_rejects_a_setting_out_of_range_naming_the_option(monkeypatch):
    monkeypatch.setattr("service.server.run", lambda *args, **kwargs: None)
    monkeypatch.setenv("INITSVC_QUEUE_DEPTH", "placeholder")
    result = invoke("serve", "--queue-depth", "0")
    assert result.exit_code == 2 and "--queue-depth" in result.stderr


@pytest.mark.parametrize("args,hint", [
    (["fetch", "--scheme", "normal", "--shape", "4", "x"], "'--shape'"),
    (["fetch", "--scheme", "normal", "--shape", "4,,5"], "'--shape'"),
    (["fetch", "--scheme", "normal", "--shape", ","], "'--shape'"),
    (["fetch", "--scheme", "normal", "--shape", "4", "1.5"], "'--shape'"),
    (["fans", "64", "a"], "'SHAPE'"),
])
def test_a_shape_with_a_part_that_is_not_a_dimension_is_refused_naming_where(args, hint):
    result = invoke(*args, "--url", "http://127.0.0.1:9")  # refused before any request
    assert result.exit_code == 2, result.output
    assert f"Invalid value for {hint}: dimensions are non-negative integers" in result.stderr


def test_an_empty_shape_is_a_0_d_tensor(server):
    done = initsvc("fetch", "--shape", "", "--scheme", "normal", "--seed", "3", "--json", url=server.url)
    assert done.returncode == 0, text(done.stderr)
    assert json.loads(done.stdout)["tensors"]["weight"]["shape"] == []


def test_version():
    import service

    result = invoke("--version")
    assert result.exit_code == 0 and result.output == f"initsvc {service.__version__}\n"


def test_binary_is_not_written_to_a_terminal(monkeypatch):
    monkeypatch.setattr("sys.stdout.isatty", lambda: True, raising=False)
    from service.cli import output

    with pytest.raises(click.UsageError, match="terminal"):
        output._save(None, "-", quiet=True, shape=[4])


def test_every_setting_is_an_option_of_serve_but_the_api_keys():
    from service.settings import Settings

    serve = main.commands["serve"]
    options = {opt for param in serve.params for opt in param.opts}
    for name in Settings.model_fields:
        flag = "--device" if name == "default_device" else "--" + name.replace("_", "-")
        assert (flag in options) == (name != "api_keys"), name


def test_serve_refuses_a_device_this_machine_lacks_before_starting(monkeypatch):
    import torch

    calls = []
    monkeypatch.setattr("service.server.run", lambda *args, **kwargs: calls.append(args))
    monkeypatch.setenv("INITSVC_DEFAULT_DEVICE", "placeholder")
    missing = f"cuda:{torch.cuda.device_count()}"  # one past the last GPU, on any machine
    result = invoke("serve", "--device", missing)
    assert result.exit_code == 2 and not calls
    assert f"'{missing}' is not a device of this machine" in result.stderr and "--device" in result.stderr


def test_every_option_has_help_and_the_help_has_examples():
    for name, command in main.commands.items():
        for param in command.params:
            if param.param_type_name == "option":
                assert param.help, f"{name} {param.opts} has no help"
        assert command.epilog and "initsvc" in command.epilog, f"{name} has no example"


@pytest.mark.parametrize("name", sorted(main.commands))
def test_help_of_every_command_exits_0_and_mentions_each_option(name):
    result = invoke(name, "--help")
    assert result.exit_code == 0, result.output
    help_text = " ".join(result.output.split())
    for param in main.commands[name].params:
        if param.param_type_name == "option" and not param.hidden:
            assert any(opt in help_text for opt in param.opts), f"{name}: {param.opts}"
        elif param.param_type_name == "argument" and param.metavar != "":
            assert (param.metavar or param.name.upper()) in help_text, f"{name}: {param.name}"
    assert "Example" in help_text


def test_python_m_service_runs_the_cli():
    done = subprocess.run([sys.executable, "-m", "service", "fetch", "--help"], capture_output=True, text=True,
                          cwd=ROOT, timeout=60)
    assert done.returncode == 0 and "--shape" in done.stdout and "Examples:" in done.stdout


def test_the_readme_documents_every_command_with_an_example():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## Command line\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    documented = {row.split("`")[1]: row.split("|")[2] for row in rows}
    assert set(documented) == set(main.commands)
    for name, example in documented.items():
        assert f"initsvc {name}" in example, name


def test_a_negative_param_typed_alone_says_how_to_give_it():
    result = invoke("gain", "leaky_relu", "-0.2", "--url", "http://127.0.0.1:9")
    assert result.exit_code == 2 and "leaky_relu:-0.2 or leaky_relu --param -0.2" in result.stderr
    result = invoke("gain", "relu", "--paramm", "0.2", "--url", "http://127.0.0.1:9")
    assert result.exit_code == 2 and "No such option '--paramm'" in result.stderr


@pytest.mark.parametrize("where", ["dir", "missing/w.safetensors", "."])
def test_an_output_that_cannot_be_written_is_a_usage_error_before_any_request(tmp_path, where, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "dir").mkdir()
    result = invoke("fetch", "--shape", "4", "--scheme", "zeros", "-o", where, "--url", "http://127.0.0.1:9")
    assert result.exit_code == 2, result.output  # not 1: port 9 was never asked
    assert "Invalid value for '-o' / '--output'" in result.stderr and "Traceback" not in result.output
