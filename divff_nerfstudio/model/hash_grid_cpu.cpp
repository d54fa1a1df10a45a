// Multi-resolution hash grid (Instant-NGP) forward and backward for the CPU, parallel over points.
//
// Same hashing and layout as nerfstudio's HashEncoding: level l owns rows [l*T, (l+1)*T) of a
// (L*T, F) table; a corner (x, y, z) hashes to (x*1 ^ y*2654435761 ^ z*805459861) mod T with
// 32-bit wrap-around arithmetic (T is a power of two). Trilinear interpolation of the 8 corners.
// The torch fallback computes the same thing with large intermediate tensors; here each
// point-level pair stays in registers.
//
// Speed: the table lookups are random reads that miss the caches, so what matters is that the
// CPU can have all 8 of a cell's reads in flight at once. The corner rows and weights are computed
// first, and the sums are kept in local variables (not in the output, which the compiler would
// have to store and reload after every read because it may alias the table).
#include <torch/extension.h>

#include <cmath>
#include <cstdint>

namespace {

constexpr uint32_t kPrimeY = 2654435761u;
constexpr uint32_t kPrimeZ = 805459861u;

struct Cell {
  int64_t row[8];
  float weight[8];
};

// The 8 corner rows of point p's cell at one level, and their trilinear weights.
inline Cell cell_of(const float* p, float scale, uint32_t mask, int64_t level_offset) {
  float frac[3];
  uint32_t base[3];
  for (int d = 0; d < 3; ++d) {
    const float s = p[d] * scale;
    const float cell = std::floor(s);
    frac[d] = s - cell;
    base[d] = static_cast<uint32_t>(static_cast<int32_t>(cell));
  }
  const uint32_t hx[2] = {base[0], base[0] + 1};
  const uint32_t hy[2] = {base[1] * kPrimeY, (base[1] + 1) * kPrimeY};
  const uint32_t hz[2] = {base[2] * kPrimeZ, (base[2] + 1) * kPrimeZ};
  const float wx[2] = {1.f - frac[0], frac[0]};
  const float wy[2] = {1.f - frac[1], frac[1]};
  const float wz[2] = {1.f - frac[2], frac[2]};
  Cell out;
  for (int c = 0; c < 8; ++c) {
    const int bx = c & 1, by = (c >> 1) & 1, bz = (c >> 2) & 1;
    out.row[c] = level_offset + static_cast<int64_t>((hx[bx] ^ hy[by] ^ hz[bz]) & mask);
    out.weight[c] = wx[bx] * wy[by] * wz[bz];
  }
  return out;
}

// F features per level known at compile time (nerfstudio's default is 2); F = 0: any, at run time.
template <int F>
void forward_points(const float* px, const float* pt, const float* ps, float* po, int64_t begin, int64_t end,
                    int64_t levels, int64_t features, int64_t table_size, uint32_t mask) {
  const int64_t nf = F > 0 ? F : features;
  for (int64_t i = begin; i < end; ++i) {
    for (int64_t l = 0; l < levels; ++l) {
      const Cell cell = cell_of(px + 3 * i, ps[l], mask, l * table_size);
      float* dst = po + (i * levels + l) * nf;
      if constexpr (F > 0) {
        float acc[F] = {};
        for (int c = 0; c < 8; ++c) {
          const float* src = pt + cell.row[c] * F;
          for (int f = 0; f < F; ++f) acc[f] += cell.weight[c] * src[f];
        }
        for (int f = 0; f < F; ++f) dst[f] = acc[f];
      } else {
        for (int64_t f = 0; f < nf; ++f) {
          float acc = 0.f;
          for (int c = 0; c < 8; ++c) acc += cell.weight[c] * pt[cell.row[c] * nf + f];
          dst[f] = acc;
        }
      }
    }
  }
}

template <int F>
void backward_levels(const float* pg, const float* px, const float* ps, float* pt, int64_t begin, int64_t end,
                     int64_t n, int64_t levels, int64_t features, int64_t table_size, uint32_t mask) {
  const int64_t nf = F > 0 ? F : features;
  for (int64_t l = begin; l < end; ++l) {
    for (int64_t i = 0; i < n; ++i) {
      const float* g = pg + (i * levels + l) * nf;
      const Cell cell = cell_of(px + 3 * i, ps[l], mask, l * table_size);
      if constexpr (F > 0) {
        float grad[F];
        for (int f = 0; f < F; ++f) grad[f] = g[f];
        for (int c = 0; c < 8; ++c) {
          float* dst = pt + cell.row[c] * F;
          for (int f = 0; f < F; ++f) dst[f] += cell.weight[c] * grad[f];
        }
      } else {
        for (int c = 0; c < 8; ++c) {
          for (int64_t f = 0; f < nf; ++f) pt[cell.row[c] * nf + f] += cell.weight[c] * g[f];
        }
      }
    }
  }
}

}  // namespace

torch::Tensor hash_grid_forward(torch::Tensor x, torch::Tensor table, torch::Tensor scales, int64_t table_size) {
  TORCH_CHECK(x.is_contiguous() && table.is_contiguous() && scales.is_contiguous(), "contiguous inputs expected");
  const int64_t n = x.size(0), levels = scales.size(0), features = table.size(1);
  auto out = torch::empty({n, levels * features}, x.options());
  const float* px = x.data_ptr<float>();
  const float* pt = table.data_ptr<float>();
  const float* ps = scales.data_ptr<float>();
  float* po = out.data_ptr<float>();
  const uint32_t mask = static_cast<uint32_t>(table_size - 1);
  at::parallel_for(0, n, 256, [&](int64_t begin, int64_t end) {
    if (features == 2) {
      forward_points<2>(px, pt, ps, po, begin, end, levels, features, table_size, mask);
    } else {
      forward_points<0>(px, pt, ps, po, begin, end, levels, features, table_size, mask);
    }
  });
  return out;
}

torch::Tensor hash_grid_backward(torch::Tensor grad_out, torch::Tensor x, torch::Tensor scales, int64_t table_size, int64_t rows) {
  TORCH_CHECK(grad_out.is_contiguous() && x.is_contiguous(), "contiguous inputs expected");
  const int64_t n = x.size(0), levels = scales.size(0), features = grad_out.size(1) / levels;
  auto grad_table = torch::zeros({rows, features}, grad_out.options());
  const float* pg = grad_out.data_ptr<float>();
  const float* px = x.data_ptr<float>();
  const float* ps = scales.data_ptr<float>();
  float* pt = grad_table.data_ptr<float>();
  const uint32_t mask = static_cast<uint32_t>(table_size - 1);
  // Threads split the levels, so no two threads ever add into the same table row.
  at::parallel_for(0, levels, 1, [&](int64_t begin, int64_t end) {
    if (features == 2) {
      backward_levels<2>(pg, px, ps, pt, begin, end, n, levels, features, table_size, mask);
    } else {
      backward_levels<0>(pg, px, ps, pt, begin, end, n, levels, features, table_size, mask);
    }
  });
  return grad_table;
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("forward", &hash_grid_forward, "hash grid encoding forward (CPU)");
  m.def("backward", &hash_grid_backward, "hash grid encoding backward into the table (CPU)");
}
