"""Three small generative models of scikit-learn's digits, ready to be searched."""
from .data import DigitsDataModule
from .fid import DigitsClassifier, DigitsFeatureExtractor, digits_fid
from .dcgan import DCGAN
from .ddpm import DDPM
from .vae import VAE

__all__ = ["DCGAN", "DDPM", "VAE", "DigitsClassifier", "DigitsDataModule", "DigitsFeatureExtractor", "digits_fid"]
