import pytest
import transformers

from samp_jax import ConfigError, EncoderConfig


def test_presets():
    base = EncoderConfig.bert_base()
    assert (base.num_layers, base.hidden_size, base.num_heads, base.intermediate_size) == (12, 768, 12, 3072)
    assert base.head_dim == 64
    mini = EncoderConfig.minilm_l6()
    assert (mini.num_layers, mini.hidden_size, mini.intermediate_size, mini.head_dim) == (6, 384, 1536, 32)


def test_from_hf_config_reads_folder_dict_and_pretrained_config(minilm_dir):
    from_folder = EncoderConfig.from_hf_config(minilm_dir)
    assert from_folder == EncoderConfig.minilm_l6()
    from_auto = EncoderConfig.from_hf_config(transformers.AutoConfig.from_pretrained(minilm_dir))
    assert from_auto == from_folder
    assert EncoderConfig.from_hf_config(from_folder.to_hf_dict()) == from_folder


def test_config_is_frozen():
    with pytest.raises(Exception):
        EncoderConfig.bert_base().hidden_size = 10


@pytest.mark.parametrize("change, message", [
    ({"model_type": "gpt2"}, "model_type='gpt2' is not supported"),
    ({"model_type": None}, "model_type=None is not supported"),
    ({"position_embedding_type": "relative_key"}, "position_embedding_type='relative_key'"),
    ({"is_decoder": True}, "is_decoder=True is not supported"),
    ({"hidden_act": "mish"}, "hidden_act='mish'"),
    ({"num_attention_heads": 5}, "must be divisible by num_heads=5"),
    ({"hidden_size": -4}, "hidden_size=-4 must be a positive integer"),
])
def test_unsupported_configs_raise_clear_errors(change, message):
    hf = EncoderConfig.minilm_l6().to_hf_dict() | change
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace("[", r"\[")):
        EncoderConfig.from_hf_config(hf)


def test_missing_required_key_is_named():
    hf = EncoderConfig.minilm_l6().to_hf_dict()
    del hf["intermediate_size"]
    with pytest.raises(ConfigError, match="intermediate_size"):
        EncoderConfig.from_hf_config(hf)


def test_missing_config_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no HF config"):
        EncoderConfig.from_hf_config(tmp_path)


@pytest.mark.parametrize("model_type, option", [
    (model_type, option) for model_type in ("distilbert", "mpnet", "deberta-v2", "modernbert")
    for option in ({"position_embedding_type": "relative_key"}, {"is_decoder": True},
                   {"add_cross_attention": True})
    if not (model_type == "mpnet" and "is_decoder" in option)])
def test_options_a_familys_classes_never_read_are_not_refused(model_type, option):
    """BertModel's options (relative position embeddings, a decoder) are refused where HF's
    classes read them (BERT, RoBERTa, XLM-R, ELECTRA; MPNet's `is_decoder`); the other
    families' classes never read them, so a file that states them runs in HF as without them."""
    from tests.helpers import FAMILY_CONFIGS
    hf = FAMILY_CONFIGS[model_type].to_hf_dict()
    assert EncoderConfig.from_hf_config(hf | option) == EncoderConfig.from_hf_config(hf)


def test_an_mpnet_decoder_is_refused():
    """transformers 4.57's MPNetModel masks causally when `is_decoder` is set (logits of the
    golden classifier move by 1.2)."""
    from tests.helpers import FAMILY_CONFIGS
    with pytest.raises(ConfigError, match="is_decoder=True is not supported: samp-jax runs encoders only"):
        EncoderConfig.from_hf_config(FAMILY_CONFIGS["mpnet"].to_hf_dict() | {"is_decoder": True})


@pytest.mark.parametrize("model_type", ["bert", "roberta", "xlm-roberta", "electra"])
@pytest.mark.parametrize("option, message", [
    ({"position_embedding_type": "relative_key_query"},
     "position_embedding_type='relative_key_query' is not supported; only 'absolute' is"),
    ({"position_embedding_type": None}, "position_embedding_type=None is not supported"),
    ({"add_cross_attention": True}, "add_cross_attention=True is not supported: samp-jax runs encoders only"),
])
def test_bert_options_are_refused_in_every_family_built_on_bertmodel(model_type, option, message):
    from tests.helpers import FAMILY_CONFIGS
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        EncoderConfig.from_hf_config(FAMILY_CONFIGS[model_type].to_hf_dict() | option)
