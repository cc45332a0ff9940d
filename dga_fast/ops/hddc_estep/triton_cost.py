"""The per-component HDDC cost shared by the E-step and anchor kernels (one definition, inlined by Triton).

For a block of centred-and-scaled rows ``b_x [BLOCK_N, BLOCK_D]`` and component ``gk`` (flat index
``g * K + k``):  ``C = ‖x − μ‖²/b + Σ_j w_j (q_jᵀ(x − μ))² + c`` (DESIGN §3), in float32, the squared
distance from the explicit difference and the projection by ``tl.dot`` in IEEE float32.
"""
import triton
import triton.language as tl


@triton.jit
def component_cost(b_x,           # [BLOCK_N, BLOCK_D] fp32, zero in padded columns
                   p_mu,          # [G, K, D]
                   p_q,           # [G, K, D, DM]
                   p_w,           # [G, K, DM]
                   p_ib,          # [G, K]
                   p_c,           # [G, K]
                   gk, gk_base, D, DM, offs_d, offs_m, m_d, m_m, valid,
                   PRECISION: tl.constexpr):
    """``valid`` False (a padded slot beyond K): the loads read slot ``gk_base`` instead and the cost is
    +inf (loads stay unmasked by ``valid``, which Triton's interpreter needs)."""
    gk = tl.where(valid, gk, gk_base)
    b_mu = tl.load(p_mu + gk * D + offs_d, mask=m_d, other=0.0)                          # [BLOCK_D]
    b_q = tl.load(p_q + gk * D * DM + offs_d[:, None] * DM + offs_m[None, :],
                  mask=m_d[:, None] & m_m[None, :], other=0.0)                          # [BLOCK_D, BLOCK_M]
    b_w = tl.load(p_w + gk * DM + offs_m, mask=m_m, other=0.0)                           # [BLOCK_M]
    inv_b = tl.load(p_ib + gk)
    const = tl.where(valid, tl.load(p_c + gk), float("inf"))
    b_z = b_x - b_mu[None, :]
    sq = tl.sum(b_z * b_z, axis=1)                                                       # [BLOCK_N]
    b_y = tl.dot(b_z, b_q, input_precision=PRECISION)                                   # [BLOCK_N, BLOCK_M]
    return sq * inv_b + tl.sum(b_y * b_y * b_w[None, :], axis=1) + const


def dot_precision(device_is_cuda: bool) -> str:
    """``tl.dot`` precision of the kernels: IEEE float32 everywhere for now. On an H100 'tf32x3' (three TF32
    tensor-core products) measured slower for these thin [64, 32] x [32, 16] products (48 vs 41 ms for the
    1M-row E-step, though with the slot loop changed in between); the launch functions take
    ``precision=`` to try other settings."""
    return "ieee"


def pow2(n: int, lo: int) -> int:
    """Next power of two ``>= max(n, lo)`` (block sizes; ``tl.dot`` needs at least 16)."""
    return max(lo, triton.next_power_of_2(max(int(n), 1)))
