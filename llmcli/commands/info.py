"""`llmcli info`: the architecture and size of a model."""

from __future__ import annotations

import typer

from llmcli import options, render


def info(
    model: options.Model = None,
    dtype: options.DTypeOpt = options.DType.auto,
    device: options.DeviceOpt = options.Device.auto,
    trust_remote_code: options.TrustRemoteCode = False,
    quantize: options.QuantizeOpt = options.Quantize.none,
    compile: options.CompileOpt = False,
    json: options.Json = False,
) -> None:
    """Architecture, parameter counts by part, memory per dtype, special tokens, origin."""
    from llmcli.inspect.architecture import model_info
    from llmcli.models import load_model

    loaded = load_model(model, dtype, device, trust_remote_code, quantize=quantize, compile=compile)
    data = model_info(loaded)
    if json:
        render.print_json(data.to_dict() | {"load_seconds": loaded.load_seconds})
    else:
        from llmcli.render.info import render_info

        render_info(data, loaded.load_seconds)


def register(app: typer.Typer) -> None:
    app.command()(info)
