"""Sound: the film's soundtrack as tokens.

model.py          AudioTokenizer: causal 1-D conv encoder/decoder with FSQ
losses.py         multi-resolution STFT and log-mel losses
discriminator.py  multi-scale STFT discriminator (the optional GAN)
measures.py       STFT distance, SI-SNR and the μ-law baseline at the same bit rate
train.py          the `train_audio_tokenizer` stage
"""
