// Multi-resolution hash grid (Instant-NGP) forward and backward for the CPU, parallel over points.
//
// Same hashing and layout as nerfstudio's HashEncoding: level l owns rows [l*T, (l+1)*T) of a
// (L*T, F) table; a corner (x, y, z) hashes to (x*1 ^ y*2654435761 ^ z*805459861) mod T with
// 32-bit wrap-around arithmetic (T is a power of two). Trilinear interpolation of the 8 corners.
// The torch fallback computes the same thing with large intermediate tensors; here each
// point-level pair stays in registers.
#include <torch/extension.h>

#include <cmath>
#include <cstdint>

namespace {

constexpr uint32_t kPrimeY = 2654435761u;
constexpr uint32_t kPrimeZ = 805459861u;

template <typename Fn>
inline void for_each_corner(const float* p, float scale, uint32_t mask, int64_t level_offset, Fn fn) {
  float cell[3], frac[3];
  uint32_t base[3];
  for (int d = 0; d < 3; ++d) {
    const float s = p[d] * scale;
    cell[d] = std::floor(s);
    frac[d] = s - cell[d];
    base[d] = static_cast<uint32_t>(static_cast<int32_t>(cell[d]));
  }
  for (int c = 0; c < 8; ++c) {
    const uint32_t bx = c & 1, by = (c >> 1) & 1, bz = (c >> 2) & 1;
    const uint32_t h = (base[0] + bx) ^ ((base[1] + by) * kPrimeY) ^ ((base[2] + bz) * kPrimeZ);
    const float w = (bx ? frac[0] : 1.f - frac[0]) * (by ? frac[1] : 1.f - frac[1]) * (bz ? frac[2] : 1.f - frac[2]);
    fn(level_offset + static_cast<int64_t>(h & mask), w);
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
    for (int64_t i = begin; i < end; ++i) {
      for (int64_t l = 0; l < levels; ++l) {
        float* dst = po + (i * levels + l) * features;
        for (int64_t f = 0; f < features; ++f) dst[f] = 0.f;
        for_each_corner(px + 3 * i, ps[l], mask, l * table_size, [&](int64_t row, float w) {
          const float* src = pt + row * features;
          for (int64_t f = 0; f < features; ++f) dst[f] += w * src[f];
        });
      }
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
    for (int64_t l = begin; l < end; ++l) {
      for (int64_t i = 0; i < n; ++i) {
        const float* g = pg + (i * levels + l) * features;
        for_each_corner(px + 3 * i, ps[l], mask, l * table_size, [&](int64_t row, float w) {
          float* dst = pt + row * features;
          for (int64_t f = 0; f < features; ++f) dst[f] += w * g[f];
        });
      }
    }
  });
  return grad_table;
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("forward", &hash_grid_forward, "hash grid encoding forward (CPU)");
  m.def("backward", &hash_grid_backward, "hash grid encoding backward into the table (CPU)");
}
