"""The papers harp reproduces, cited by title, authors and year.

Model families (``FamilySpec.paper``), search spaces and study tables refer to a paper by its key
here, so a citation is written once and `harp models` can print it. The accuracy tables of these
papers are what a sweep of the matching search space on the real data is compared with.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Paper:
    """One paper: enough to find it, and what harp takes from it."""

    key: str
    title: str
    authors: str
    year: int | None  # None: the paper states no date
    venue: str
    takes: str  # what harp builds from it

    def cite(self) -> str:
        year = self.year if self.year is not None else "n.d."
        return f'{self.authors} ({year}). "{self.title}". {self.venue}.'


PAPERS: dict[str, Paper] = {
    paper.key: paper
    for paper in (
        Paper(
            key="chen2022",
            title="Human Action Recognition Based on Vision Transformer and L2 Regularization",
            authors="Qiliang Chen, Hasiqidalatu Tang, Jiaxin Cai",
            year=2022,
            venue="11th International Conference on Computing and Pattern Recognition (ICCPR 2022), ACM",
            takes="TimeSformer on UCF101 with an explicit L2 penalty in the loss; segment-stride sampling",
        ),
        Paper(
            key="kaur",
            title="Action Recognition Using Vision Transformers",
            authors="Saizalpreet Kaur",
            year=None,
            venue="University of Surrey EEEM068 project report",
            takes="TimeSformer on a 25-class HMDB51 subset; the LR / batch / optimiser / pretraining / sampling sweep; "
            "ViViT comparison; short-video augmentation; an upload page",
        ),
        Paper(
            key="shrestha2021",
            title="3D Convolutional with Attention for Action Recognition",
            authors="Labina Shrestha, Shikha Dubey, Farrukh Olimov, Muhammad Aasim Rafique, Moongu Jeon",
            year=2021,
            venue="Korea Software Congress (KIISE)",
            takes="the 3D-CNN with a sigmoid attention gate, trained from scratch on UCF101",
        ),
        Paper(
            key="anh2022",
            title="Temporal Human Action Recognition",
            authors="Tran Hoang Quoc Anh, Le Hong Duc, Nguyen Quang Duc, La Dai Lam, Luu Trong Nghia",
            year=2022,
            venue="Hanoi University of Science and Technology project report",
            takes="Late Fusion, LRCN, C3D, I3D and non-local I3D on UCF101 and HMDB51; multi-clip sampling; Grad-CAM",
        ),
        Paper(
            key="xu-mdt",
            title="Video Human Action Recognition by the Fusion of Significant Motion and Coarse-fine Temporal "
            "Granularity Features",
            authors="Kaishi Xu, Hanhua Cao, Yang Yi",
            year=None,
            venue="Authorea preprint",
            takes="MDT-Net against TSN, TSM and TEA; FLOPs vs accuracy; 10-clip x 3-crop testing",
        ),
    )
}


def cite(key: str) -> str:
    """The full citation of a paper key (a KeyError names an unknown key: a bug, not user input)."""
    return PAPERS[key].cite()


__all__ = ["PAPERS", "Paper", "cite"]
