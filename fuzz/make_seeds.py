"""Writes the committed seed inputs of the fuzz targets into fuzz/seeds/<target>/.

Small valid files (a 1-layer, 4-wide GPT-2; a parity file for it; character and BPE tokenizers;
corpora; run zips) plus a few near misses, so libFuzzer starts from inputs that reach deep into
each reader.
Needs numpy, safetensors and tokenizers (pip install numpy safetensors tokenizers).
Run from anywhere: python3 fuzz/make_seeds.py
"""
import base64
import io
import json
import os
import struct
import zipfile

import numpy as np
from safetensors.numpy import save
from tokenizers import Tokenizer, models, pre_tokenizers, decoders, trainers

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "seeds")
rng = np.random.default_rng(0)

CONFIG = dict(model_type="gpt2", n_layer=1, n_head=1, n_embd=4, n_positions=4, vocab_size=8,
              activation_function="gelu_new", layer_norm_epsilon=1e-5)


def params(c, prefix="transformer."):
    C, V, T = c["n_embd"], c["vocab_size"], c["n_positions"]
    p = {"wte.weight": (V, C), "wpe.weight": (T, C)}
    for l in range(c["n_layer"]):
        h = f"h.{l}."
        p.update({h + "ln_1.weight": (C,), h + "ln_1.bias": (C,), h + "attn.c_attn.weight": (C, 3 * C),
                  h + "attn.c_attn.bias": (3 * C,), h + "attn.c_proj.weight": (C, C), h + "attn.c_proj.bias": (C,),
                  h + "ln_2.weight": (C,), h + "ln_2.bias": (C,), h + "mlp.c_fc.weight": (C, 4 * C),
                  h + "mlp.c_fc.bias": (4 * C,), h + "mlp.c_proj.weight": (4 * C, C), h + "mlp.c_proj.bias": (C,)})
    p.update({"ln_f.weight": (C,), "ln_f.bias": (C,)})
    return {prefix + k: (rng.standard_normal(s) * 0.02).astype(np.float32) for k, s in p.items()}


def write(target, name, data):
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def model_input(config, tensors, metadata=None):
    return json.dumps(config).encode() + b"\0" + save(tensors, metadata=metadata)


# model_dir: config.json NUL model.safetensors
w = params(CONFIG)
write("model_dir", "f32", model_input(CONFIG, w))
write("model_dir", "f16", model_input(CONFIG, {k: v.astype(np.float16) for k, v in w.items()}))
write("model_dir", "no_prefix_tied", model_input(
    CONFIG, {**{k[len("transformer."):]: v for k, v in w.items()}, "lm_head.weight": w["transformer.wte.weight"],
             "h.0.attn.bias": np.tril(np.ones((4, 4), np.float32))}))
write("model_dir", "wrong_shape", model_input(CONFIG, {**w, "transformer.wpe.weight": np.zeros((3, 4), np.float32)}))
write("model_dir", "n_ctx", model_input({k: v for k, v in CONFIG.items() if k != "n_positions"} | {"n_ctx": 4}, w))
write("model_dir", "truncated", model_input(CONFIG, w)[:300])

# parity_file: a parity file in the format of tests/fixtures/make_parity.py (values random)
B, T, V = 1, 3, CONFIG["vocab_size"]
meta = {"config": json.dumps(dict(n_layer=1, n_head=1, n_embd=4, block_size=4, vocab_size=8)),
        "adamw": json.dumps(dict(lr=1e-3, beta1=0.9, beta2=0.95, eps=1e-8, weight_decay=0.1))}
ids = rng.integers(0, V, (B, T)).astype(np.int32)
parity = {**w, "x": ids, "y": np.roll(ids, -1, axis=1),
          "expected.logits": rng.standard_normal((B, T, V)).astype(np.float32),
          "expected.loss": np.array([2.0], np.float32), "expected.losses": np.array([2.0, 1.9], np.float32)}
write("parity_file", "minimal", save(parity, metadata=meta))
grads = {"expected.grad." + k: v for k, v in w.items()}
step1 = {"expected.step1." + k: v for k, v in w.items()}
write("parity_file", "grads_step1", save({**parity, **grads, **step1}, metadata=meta))
write("parity_file", "no_config", save(parity))

# tokenizer: tokenizer.json files
text = "First Citizen:\nBefore we proceed any further, hear me speak.\n"
chars = sorted(set(text))
char_tok = Tokenizer(models.BPE(vocab={c: i for i, c in enumerate(chars)}, merges=[]))
char_tok.decoder = decoders.Fuse()
write("tokenizer", "char.json", char_tok.to_str().encode())
bpe = Tokenizer(models.BPE())
bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
bpe.decoder = decoders.ByteLevel()
bpe.train_from_iterator([text] * 4, trainers.BpeTrainer(vocab_size=300, special_tokens=["<|endoftext|>"],
                                                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
write("tokenizer", "bpe.json", bpe.to_str().encode())
write("tokenizer", "not_json", b"{\"version\": \"1.0\", \"model\": ")

# corpus: text files
write("corpus", "shakespeare_like", (text * 8).encode())
write("corpus", "unicode", "ünïcödé 🙂 text — with tabs\tand\r\nlines\n".encode() * 6)
write("corpus", "binary", bytes(range(256)))
write("corpus", "latin1", "caf\xe9 au lait\n".encode("latin-1") * 10)
write("corpus", "empty", b"")

# run_zip: run zips (src/run/format.rs's files), stored and deflated, at the top and in a folder,
# and near misses: a path out of the folder, a missing file, a lying declared size
run = {"config.json": json.dumps(CONFIG).encode(), "tokenizer.json": char_tok.to_str().encode(),
       "model.safetensors": save(w, metadata={"format": "pt"}), "training_state.safetensors": save(w),
       "metrics.jsonl": b'{"iter":1,"loss":2.5,"lr":0.001,"tokens_per_sec":1.0,"ms_per_step":2.0}\n',
       "corpus.txt": (text * 8).encode()}


def run_zip(files, prefix="", method=zipfile.ZIP_DEFLATED):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", method) as z:
        for name, data in files.items():
            info = zipfile.ZipInfo(prefix + name, date_time=(2026, 1, 1, 0, 0, 0))  # the same bytes each run
            info.compress_type = method
            z.writestr(info, data)
    return buf.getvalue()


write("run_zip", "deflated", run_zip(run))
write("run_zip", "stored_in_folder", run_zip(run, "out/", zipfile.ZIP_STORED))
write("run_zip", "traversal", run_zip({**run, "../evil.txt": b"x"}))
write("run_zip", "missing_state", run_zip({k: v for k, v in run.items() if k != "training_state.safetensors"}))
lying = bytearray(run_zip(run, method=zipfile.ZIP_STORED))
cd = lying.find(b"PK\x01\x02")
lying[cd + 24:cd + 28] = struct.pack("<I", 3 << 30)  # the first entry's declared size: 3 GiB
write("run_zip", "lying_size", bytes(lying))

# link: a link of every setting, an old one of a few, and near misses (see also
# tests/fixtures/hostile/links, made by tests/fixtures/make_hostile_links.py)
def link(obj):
    return ("#run=" + base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")).encode()


every = dict(v=1, tokenizer="bpe:512", n_layer=2, n_head=2, n_embd=64, block_size=32, batch_size=8, grad_accum=1,
             max_iters=500, lr=0.002, eval_interval=50, log_interval=1, seed=1337, min_lr=None, warmup_iters=25,
             eval_iters=20, weight_decay=0.1, beta1=0.9, beta2=0.99, grad_clip=1.0, dropout=0.0, precision="f32",
             attention="flash", corpus={"task": {"name": "addition", "params": ""}})
write("link", "every", link(every))
write("link", "old", link(dict(v=1, n_layer=3, corpus="own")))
write("link", "bad_fields", link(dict(v=1, n_layer=-1, lr="x", corpus={"builtin": "nope"}, knob=1)))
write("link", "newer", link(dict(v=2)))

# peft_config: adapter_config.json as peft writes it (the committed LoRA fixtures), and near misses
LORA = os.path.join(os.path.dirname(OUT), "..", "tests", "fixtures", "lora")
for name in ("gpt2_adapter", "llama_adapter"):
    with open(os.path.join(LORA, name, "adapter_config.json"), "rb") as f:
        good = f.read()
    write("peft_config", name, good)
    write("peft_config", name + "_truncated", good[: len(good) // 2])
write("peft_config", "rank_zero", json.dumps({"peft_type": "LORA", "r": 0, "lora_alpha": 8,
                                               "target_modules": ["c_attn"]}).encode())
