"""Three small generative models of scikit-learn's digits, ready to be searched."""
from .data import DigitsDataModule
from .fid import DigitsClassifier, DigitsFeatureExtractor, digits_fid
from .vae import VAE

__all__ = ["VAE", "DigitsClassifier", "DigitsDataModule", "DigitsFeatureExtractor", "digits_fid"]
