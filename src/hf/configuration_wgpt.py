# configuration_wgpt.py: the config of wgpt's own model type, written by wgpt beside the weights
# of any model whose switches are not exactly a transformers class (GPT2LMHeadModel,
# LlamaForCausalLM, Qwen3ForCausalLM), so that
#   AutoModelForCausalLM.from_pretrained(dir, trust_remote_code=True)
# loads it with modeling_wgpt.py. The keys are GPT-2's sizes and wgpt's switch names, as
# config.json and the run settings spell them (docs/runs.md); each defaults to GPT-2's choice.

from transformers import PretrainedConfig


class WgptConfig(PretrainedConfig):
    model_type = "wgpt"
    attribute_map = {
        "hidden_size": "n_embd",
        "num_attention_heads": "n_head",
        "num_hidden_layers": "n_layer",
        "max_position_embeddings": "n_positions",
        "num_key_value_heads": "n_kv_head",
    }

    def __init__(
        self,
        vocab_size=50257,
        n_positions=1024,
        n_layer=12,
        n_head=12,
        n_embd=768,
        positions="learned",  # learned (wpe) | rope (rotate-half, rope_theta) | none
        rope_theta=10000.0,
        norm="layernorm",  # layernorm | rmsnorm, both with norm_eps
        norm_eps=1e-5,
        mlp="gelu",  # gelu (tanh) | relu2 | swiglu (silu(gate) * up)
        intermediate_size=None,  # the MLP's hidden width [4 * n_embd; swiglu: nearest multiple of 4 to 8/3 n_embd]
        n_kv_head=None,  # key/value heads, dividing n_head (grouped-query attention) [n_head]
        head_dim=None,  # the width of a head [n_embd // n_head]
        qk_norm=False,  # an RMSNorm over each head's q and k before the rotation (Qwen3)
        bias=True,  # the linear layers' biases, and LayerNorm's
        tied=True,  # the head shares the token embedding
        logit_softcap=None,  # logits = c * tanh(logits / c); None: off
        **kwargs,
    ):
        if positions not in ("learned", "rope", "none"):
            raise ValueError(f"positions is {positions!r}; expected learned, rope or none")
        if norm not in ("layernorm", "rmsnorm"):
            raise ValueError(f"norm is {norm!r}; expected layernorm or rmsnorm")
        if mlp not in ("gelu", "relu2", "swiglu"):
            raise ValueError(f"mlp is {mlp!r}; expected gelu, relu2 or swiglu")
        self.vocab_size = vocab_size
        self.n_positions = n_positions
        self.n_layer = n_layer
        self.n_head = n_head
        self.n_embd = n_embd
        self.positions = positions
        self.rope_theta = rope_theta
        self.norm = norm
        self.norm_eps = norm_eps
        self.mlp = mlp
        if intermediate_size is None:
            intermediate_size = 4 * ((2 * n_embd + 1) // 3) if mlp == "swiglu" else 4 * n_embd
        self.intermediate_size = intermediate_size
        self.n_kv_head = n_head if n_kv_head is None else n_kv_head
        self.head_dim = n_embd // n_head if head_dim is None else head_dim
        if n_head % self.n_kv_head != 0:
            raise ValueError(f"n_kv_head ({self.n_kv_head}) must divide n_head ({n_head})")
        self.qk_norm = qk_norm
        self.bias = bias
        self.tied = tied
        self.logit_softcap = logit_softcap
        # the model keeps no KV cache: generate() runs the whole sequence each step
        kwargs["use_cache"] = False
        kwargs["tie_word_embeddings"] = tied
        super().__init__(**kwargs)
