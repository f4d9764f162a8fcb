"""Tests of frameworm_lightning.stopping."""
