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
                   gk, D, DM, offs_d, offs_m, m_d, m_m):
    b_mu = tl.load(p_mu + gk * D + offs_d, mask=m_d, other=0.0)                          # [BLOCK_D]
    b_q = tl.load(p_q + gk * D * DM + offs_d[:, None] * DM + offs_m[None, :],
                  mask=m_d[:, None] & m_m[None, :], other=0.0)                          # [BLOCK_D, BLOCK_M]
    b_w = tl.load(p_w + gk * DM + offs_m, mask=m_m, other=0.0)                           # [BLOCK_M]
    inv_b = tl.load(p_ib + gk)
    const = tl.load(p_c + gk)
    b_z = b_x - b_mu[None, :]
    sq = tl.sum(b_z * b_z, axis=1)                                                       # [BLOCK_N]
    b_y = tl.dot(b_z, b_q, input_precision="ieee")                                      # [BLOCK_N, BLOCK_M]
    return sq * inv_b + tl.sum(b_y * b_y * b_w[None, :], axis=1) + const


def pow2(n: int, lo: int) -> int:
    """Next power of two ``>= max(n, lo)`` (block sizes; ``tl.dot`` needs at least 16)."""
    return max(lo, triton.next_power_of_2(max(int(n), 1)))
