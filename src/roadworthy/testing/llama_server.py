"""Run llama.cpp's OpenAI-compatible server with the bundled model, safely on any CPU.

``python -m roadworthy.testing.llama_server --port 8081`` is ``python -m llama_cpp.server``
with two differences: the model defaults to the bundled SmolLM2 file, and llama.cpp's
extra buffer types are off (see :mod:`roadworthy.providers.local` for why). The
integration tests start it on loopback; users can start it to try the ``openai``
provider without a cloud account.
"""

from __future__ import annotations

import sys


def main() -> None:
    try:
        import llama_cpp.llama_cpp as lowlevel
        from llama_cpp.server.__main__ import main as server_main
    except ImportError:
        sys.exit("needs the [local] extra: pip install 'roadworthy[local]'")
    from roadworthy.providers.local import bundled_model_path, without_extra_bufts

    lowlevel.llama_model_default_params = without_extra_bufts(lowlevel.llama_model_default_params)
    if "--model" not in sys.argv:
        sys.argv += ["--model", str(bundled_model_path())]
    server_main()  # type: ignore[no-untyped-call]


if __name__ == "__main__":
    main()
