"""Served models: any OpenAI-compatible server (vLLM, SGLang, TGI, llama.cpp, Ollama) as a model.

::

    from llmlab import Lab
    lab = Lab()
    lab.load("openai:http://127.0.0.1:8080/v1", model="smollm2")
    lab.generate("What is the capital of France?")       # streamed, measured on the client

    from llmlab.served import run_load_test
    test = run_load_test(lab.model(), "1,2,4,8", requests=16, slo="ttft=200ms,itl=50ms")
    test.to_pandas(); test.save_html("load.html")
"""

from llmlab.served.loadtest import LoadLevel, LoadTest, parse_slo, run_load_test
from llmlab.served.model import PREFIX, ServedModel, is_served, load_served

__all__ = [
    "PREFIX",
    "LoadLevel",
    "LoadTest",
    "ServedModel",
    "is_served",
    "load_served",
    "parse_slo",
    "run_load_test",
]
