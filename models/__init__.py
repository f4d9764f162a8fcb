"""Three small generative models of scikit-learn's digits, ready to be searched.

Each model is a LightningModule with typed ``__init__`` hyperparameters; all train on
:class:`DigitsDataModule` (images in [0, 1], nothing downloaded) and report a Fréchet
score (``fid``) computed on a shipped digits classifier. See ``docs/models.md``.

Example::

    >>> from models import VAE, DigitsDataModule
    >>> tuple(VAE(latent_dim=4).sample(2).shape)
    (2, 1, 8, 8)
"""

from .base import DigitsGenerativeModule
from .data import DigitsDataModule
from .dcgan import DCGAN
from .ddpm import DDPM
from .fid import DigitsClassifier, DigitsFeatureExtractor, digits_fid, load_digits_classifier, train_digits_classifier
from .vae import VAE

__all__ = [
    "DCGAN",
    "DDPM",
    "VAE",
    "DigitsClassifier",
    "DigitsDataModule",
    "DigitsFeatureExtractor",
    "DigitsGenerativeModule",
    "digits_fid",
    "load_digits_classifier",
    "train_digits_classifier",
]
