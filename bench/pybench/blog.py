"""The blog post's `__class__`-swap patch ("runtime patching of a nn.Module", 2024-06-15),
verbatim apart from the undo, which the post does not show."""

import torch
import torch.nn as nn
import torch.nn.functional as F


class MostlyFrozenEmbedding(nn.Embedding):
    @classmethod
    def from_existing(
        cls,
        embedding: nn.Embedding,
        trainable_token_ids: list[int],
    ) -> "MostlyFrozenEmbedding":
        with torch.no_grad():
            for param in embedding.parameters():
                param.requires_grad_(False)

        embedding.delta = nn.Parameter(
            torch.zeros(len(trainable_token_ids), embedding.embedding_dim)
        )
        embedding.register_buffer(
            "trainable_token_ids",
            torch.tensor(trainable_token_ids)
            .reshape(-1, 1)
            .repeat(1, embedding.embedding_dim),
        )

        embedding.__class__ = cls
        return embedding

    def forward(self, input: torch.Tensor):
        updated_weight = torch.scatter_add(
            self.weight, dim=0, index=self.trainable_token_ids, src=self.delta
        )
        # taken from nn.Embedding forward implementation
        return F.embedding(
            input,
            updated_weight,
            self.padding_idx,
            self.max_norm,
            self.norm_type,
            self.scale_grad_by_freq,
            self.sparse,
        )


def unpatch(embedding: MostlyFrozenEmbedding) -> nn.Embedding:
    """Undoes `from_existing`: the added tensors go, the class and `requires_grad` come back
    (what `tch_patch::unpatch` does on the Rust side)."""
    del embedding.delta
    del embedding.trainable_token_ids
    embedding.__class__ = nn.Embedding
    embedding.weight.requires_grad_(True)
    return embedding


class OneHotMostlyFrozenEmbedding(nn.Embedding):
    """The same patch with tch-patch's forward: the table's own lookup plus
    `one_hot(input == ids) @ delta`, O(batch x k x dim) instead of O(vocab x dim)."""

    @classmethod
    def from_existing(cls, embedding: nn.Embedding, trainable_token_ids: list[int]):
        embedding.delta = nn.Parameter(
            torch.zeros(len(trainable_token_ids), embedding.embedding_dim)
        )
        embedding.register_buffer("token_ids", torch.tensor(trainable_token_ids))
        embedding.__class__ = cls
        return embedding

    def forward(self, input: torch.Tensor):
        with torch.no_grad():
            frozen = super().forward(input)
        hits = (input.unsqueeze(-1) == self.token_ids).to(self.delta.dtype)
        return frozen + hits @ self.delta
