"""``hf_seq2seq``: a HuggingFace encoder-decoder model (AutoModelForSeq2SeqLM, Marian tested)
as a fairseq encoder-decoder model, for ``--task translation`` (see :mod:`.loading` for what
all wrappers share).

Decoding is incremental: HF's key/value cache lives in fairseq's incremental state and is
reordered with the beams, so ``fairseq-generate`` beam search works. fairseq's leading
``</s>`` of ``prev_output_tokens`` becomes the HF ``decoder_start_token_id``; left-padded
sources are right-aligned first (positions).
"""
from typing import Dict, List

import torch
from torch import Tensor

from fairseq.models import FairseqEncoder, FairseqEncoderDecoderModel, FairseqIncrementalDecoder, register_model

from . import vocab as hf_vocab
from .loading import HFSeq2SeqConfig, load_hf_model, load_hf_tokenizer, max_positions_of, right_align
from .seam import PROBE_TARGET_LENGTH, HFSitesMixin


class HFEncoder(FairseqEncoder):
    """The HF model's encoder on fairseq source tokens (the HF model is owned by the fairseq model)."""

    def __init__(self, dictionary, vocab_map: hf_vocab.VocabMap, hf, max_positions: int):
        super().__init__(dictionary)
        self.register_buffer("to_hf", vocab_map.to_hf, persistent=False)
        self.__dict__["hf"] = hf  # owned (and registered) by the fairseq model, not here
        self.pad = dictionary.pad()
        self._max_positions = max_positions

    def forward(self, src_tokens, src_lengths=None, **kwargs):
        tokens, _ = right_align(src_tokens, self.pad)
        mask = tokens.ne(self.pad)
        out = self.hf.get_encoder()(input_ids=self.to_hf[tokens], attention_mask=mask.long(), return_dict=True)
        return {"encoder_out": [out.last_hidden_state], "encoder_padding_mask": [~mask], "src_tokens": [tokens]}

    def reorder_encoder_out(self, encoder_out: Dict[str, List[Tensor]], new_order):
        return {k: [t.index_select(0, new_order) for t in v] for k, v in encoder_out.items()}

    def max_positions(self):
        return self._max_positions


class HFDecoder(FairseqIncrementalDecoder):
    """The HF model's decoder and LM head, logits over the fairseq target dictionary."""

    def __init__(self, dictionary, vocab_map: hf_vocab.VocabMap, hf, decoder_start: int, max_positions: int):
        super().__init__(dictionary)
        self.register_buffer("to_hf", vocab_map.to_hf, persistent=False)
        self.register_buffer("out_index", vocab_map.out_index, persistent=False)
        self.register_buffer("extra", torch.tensor(vocab_map.extra, dtype=torch.long), persistent=False)
        self.identity = vocab_map.identity
        self.__dict__["hf"] = hf
        self.pad, self.eos = dictionary.pad(), dictionary.eos()
        self.decoder_start = decoder_start
        self._max_positions = max_positions

    def _hf_ids(self, tokens: Tensor, first: bool) -> Tensor:
        ids = self.to_hf[tokens]
        if first:
            if not bool(tokens[:, 0].eq(self.eos).all()):
                raise ValueError(
                    "hf_seq2seq: prev_output_tokens must start with </s> in every row (fairseq's "
                    "default; --left-pad-target is not supported)"
                )
            ids[:, 0] = self.decoder_start
        return ids

    def forward(self, prev_output_tokens, encoder_out=None, incremental_state=None, features_only=False, **kwargs):
        from transformers.modeling_outputs import BaseModelOutput

        enc = encoder_out["encoder_out"][0]
        enc_mask = (~encoder_out["encoder_padding_mask"][0]).long()
        cache = None
        if incremental_state is not None:
            state = self.get_incremental_state(incremental_state, "hf")
            cache = state["past"] if state is not None else None
        first = cache is None
        tokens = prev_output_tokens if first else prev_output_tokens[:, -1:]
        dec_mask = tokens.ne(self.pad).long() if incremental_state is None else None
        out = self.hf(
            encoder_outputs=BaseModelOutput(last_hidden_state=enc),
            attention_mask=enc_mask,
            decoder_input_ids=self._hf_ids(tokens, first),
            decoder_attention_mask=dec_mask,
            past_key_values=cache,
            use_cache=incremental_state is not None,
            return_dict=True,
        )
        if incremental_state is not None:
            self.set_incremental_state(incremental_state, "hf", {"past": out.past_key_values})
        logits = out.logits
        if not self.identity:
            logits = hf_vocab.to_fairseq_logits(logits, self.out_index, self.extra)
        return logits, {"attn": [None], "inner_states": None}

    def reorder_incremental_state(self, incremental_state, new_order):
        state = self.get_incremental_state(incremental_state, "hf")
        if state is not None and state["past"] is not None:
            state["past"].reorder_cache(new_order)

    def max_positions(self):
        return self._max_positions


@register_model("hf_seq2seq", dataclass=HFSeq2SeqConfig)
class HFSeq2SeqModel(HFSitesMixin, FairseqEncoderDecoderModel):
    def __init__(self, hf, tokenizer, encoder, decoder, vocab_map):
        super().__init__(encoder, decoder)
        self.hf = hf
        self.tokenizer = tokenizer
        self.__dict__["vocab_map"] = vocab_map

    @property
    def device_anchor(self):
        return self.encoder.to_hf

    @classmethod
    def build_model(cls, cfg, task):
        tokenizer, (src_map, tgt_map) = load_hf_tokenizer(
            cfg, [(task.source_dictionary, "source dictionary"), (task.target_dictionary, "target dictionary")]
        )
        hf = load_hf_model(cfg, "AutoModelForSeq2SeqLM")
        if not hf.config.is_encoder_decoder:
            raise ValueError(f"hf_seq2seq: {cfg.hf_model_dir} is not an encoder-decoder model")
        src_map.check_model_size(hf.get_input_embeddings().num_embeddings)
        tgt_map.check_model_size(hf.get_output_embeddings().out_features)
        start = hf.config.decoder_start_token_id
        if start is None:
            start = getattr(hf.generation_config, "decoder_start_token_id", None)
        if start is None:
            raise ValueError(f"hf_seq2seq: {cfg.hf_model_dir} has no decoder_start_token_id in its config")
        max_pos = max_positions_of(hf.config)
        encoder = HFEncoder(task.source_dictionary, src_map, hf, max_pos)
        decoder = HFDecoder(task.target_dictionary, tgt_map, hf, start, max_pos)
        return cls(hf, tokenizer, encoder, decoder, src_map)

    def _probe_run(self):
        ids = self._probe_source()
        start = torch.full((1, PROBE_TARGET_LENGTH), self.decoder.decoder_start, dtype=torch.long, device=ids.device)
        self.hf(input_ids=ids, attention_mask=torch.ones_like(ids), decoder_input_ids=start)

    def max_decoder_positions(self):
        return self.decoder.max_positions()
