"""An attention encoder-decoder ASR model: log-mel frames -> conv frontend -> Transformer
encoder -> the zoo's Transformer decoder over subword tokens.

The decoder, its KV cache and the decoders of model_zoo.decoding (greedy, sampling, beam
search, shallow fusion) are the text encoder-decoder's: only the encoder's input differs.
Batches come from the "asr" feature converter (tasks/asr): `encoder_input_features` [batch,
frames, mels] float32 and `encoder_input_mask` [batch, frames] (1 on real frames), plus the
decoder features of SeqIO's encoder-decoder converter. Cross-attention sees the encoder
positions whose first frame is real (`frontend.subsampled_mask`).
"""

from typing import Optional

import gin

from model_zoo import dense, feature_converters, models
from model_zoo.asr import frontend
from model_zoo.layers import masks, types


@gin.configurable
class SpeechEncoderDecoder(dense.EncoderDecoder):
  """EncoderDecoder whose encoder reads log-mel frames through ConvSubsampling."""

  subsampling_channels: int = 64

  def setup(self):
    super().setup()
    cfg = self.config
    self.frontend = frontend.ConvSubsampling(
        cfg.emb_dim,
        self.subsampling_channels,
        dtype=cfg.activation_dtype,
        param_dtype=cfg.parameter_dtype,
    )

  def encode(
      self, encoder_input_features, encoder_input_mask, deterministic: bool = True
  ) -> tuple[types.Array, types.Array]:
    """(encoded [batch, positions, emb], the positions' mask [batch, positions])."""
    x = self.frontend(encoder_input_features, encoder_input_mask)
    mask = frontend.subsampled_mask(encoder_input_mask)
    x = self.encoder(x, masks.bidirectional_mask(mask, mask), None, deterministic=deterministic)
    return self.encoder_norm(x), mask

  def __call__(
      self,
      encoder_input_features,
      encoder_input_mask,
      decoder_input_tokens,
      decoder_target_tokens,
      decoder_segment_ids: Optional[types.Array] = None,
      decoder_positions: Optional[types.Array] = None,
      *,
      decode: bool = False,
      deterministic: bool = True,
  ):
    encoded, mask = self.encode(encoder_input_features, encoder_input_mask, deterministic)
    return self.decode(
        encoded,
        mask,
        decoder_input_tokens,
        decoder_target_tokens,
        decoder_segment_ids=decoder_segment_ids,
        decoder_positions=decoder_positions,
        decode=decode,
        deterministic=deterministic,
    )


@gin.configurable
class AsrModel(models.EncoderDecoderModel):
  """Transcribes `encoder_input_features`; decodes exactly as the text encoder-decoder does."""

  FEATURE_CONVERTER_CLS = feature_converters.AsrFeatureConverter

  def _encode(self, params, batch):
    return self.module.apply(
        {"params": params},
        batch["encoder_input_features"],
        batch["encoder_input_mask"],
        method="encode",
    )
