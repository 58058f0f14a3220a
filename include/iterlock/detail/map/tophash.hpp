// iterlock/detail/map/tophash.hpp: the one-byte summary Go keeps for each slot of a bucket, and the 8-wide
// matchers over it.
//
// Owns: iterlock::detail's tophash states (empty_rest .. min_top_hash), bucket_cnt, tophash_of(), is_empty(),
//       is_full(), is_evacuated_mark(), slot_mask, match_byte/match_full/match_empty (and their _swar,
//       _sse2, _neon twins), has_empty_rest(), order_from(), tophash_match_path.
// Invariants: tophash_of(h) >= min_top_hash, so a live entry's byte is never a reserved state; every
//       matcher returns the same mask as its SWAR twin (bit i = slot i).
//
// A slot's tophash byte is either the top 8 bits of the key's hash (bumped up to at least min_top_hash), or
// one of the small reserved states below (Go's runtime/map.go names in parentheses):
//
//   0 empty_rest      (emptyRest)      this slot is empty, and so is every later slot of the bucket and of
//                                      its overflow chain: a lookup may stop here.
//   1 empty_one       (emptyOne)       this slot is empty; later slots may be full.
//   2 evacuated_x     (evacuatedX)     growth moved the entry to the first half of the new array.
//   3 evacuated_y     (evacuatedY)     growth moved the entry to the second half.
//   4 evacuated_empty (evacuatedEmpty) the slot was empty when its bucket was evacuated.
//   5..255            a live entry; the value is tophash(hash).
//
// A bucket is evacuated iff its first slot holds 2, 3 or 4 (evacuation marks every slot of the chain).
// The eight bytes of a bucket are matched at once: SSE2 on x86-64, NEON on aarch64, SWAR elsewhere (the
// comment before load_tophash_word, and DESIGN.md, "Which path runs where").
#pragma once

#include <bit>
#include <cstdint>
#include <cstring>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif
#if defined(__aarch64__) && defined(__ARM_NEON)
#include <arm_neon.h>
#endif

namespace iterlock::detail {

inline constexpr std::uint8_t empty_rest = 0;
inline constexpr std::uint8_t empty_one = 1;
inline constexpr std::uint8_t evacuated_x = 2;
inline constexpr std::uint8_t evacuated_y = 3;
inline constexpr std::uint8_t evacuated_empty = 4;
inline constexpr std::uint8_t min_top_hash = 5;

inline constexpr unsigned bucket_cnt_bits = 3;
inline constexpr unsigned bucket_cnt = 1u << bucket_cnt_bits;  // Go's bucketCnt: 8 slots per bucket

inline constexpr std::uint8_t tophash_of(std::uint64_t hash) noexcept {
    std::uint8_t top = static_cast<std::uint8_t>(hash >> 56);
    return top < min_top_hash ? static_cast<std::uint8_t>(top + min_top_hash) : top;
}
inline constexpr bool is_empty(std::uint8_t top) noexcept {
    return top <= empty_one;
}
inline constexpr bool is_full(std::uint8_t top) noexcept {
    return top >= min_top_hash;
}
inline constexpr bool is_evacuated_mark(std::uint8_t top) noexcept {
    return top > empty_one && top < min_top_hash;
}

// Bit i of a mask is slot i.
using slot_mask = std::uint32_t;

// The matchers (match_byte, match_full, match_empty) read the eight tophash bytes of a bucket at once.
// Each has a portable SWAR twin (`_swar`, plain 64-bit integer arithmetic, every CPU) and, where the CPU has
// one, a vector version; the unsuffixed name is the one the table uses:
//
//   x86-64 (SSE2 is baseline)      match_*_sse2   pcmpeqb / pmaxub / pminub, then pmovmskb
//   aarch64 (Advanced SIMD, NEON)  match_*_neon   cmeq / cmhs / cmhi on 8 lanes, then a weighted addv
//   anything else                  match_*_swar
//
// All three give exactly the same mask for every byte pattern (tests/map/map_tophash_test.cpp checks each
// against a byte-at-a-time reference; the SWAR twin is tested on every CPU, the vector one where it runs).
// tophash_match_path names the selected one, for tests and diagnostics.

// The eight tophash bytes as one little-endian word: slot i in bits 8i..8i+7 on any host.
inline std::uint64_t load_tophash_word(const std::uint8_t* t) noexcept {
    std::uint64_t w;
    std::memcpy(&w, t, 8);
    if constexpr (std::endian::native == std::endian::big) w = __builtin_bswap64(w);
    return w;
}

inline constexpr std::uint64_t swar_lo7 = 0x7F7F7F7F7F7F7F7FULL;  // the low 7 bits of every byte
inline constexpr std::uint64_t swar_hi = 0x8080808080808080ULL;   // the high bit of every byte
inline constexpr std::uint64_t swar_ones = 0x0101010101010101ULL;

// High bit of byte i set iff byte i of w is >= c (1 <= c <= 128), exactly: a byte below 128 plus (128 - c)
// reaches 128 iff it is >= c and stays below 256 (no carry into the next byte); a byte of 128 or more has
// its high bit already.
inline constexpr std::uint64_t swar_bytes_at_least(std::uint64_t w, std::uint8_t c) noexcept {
    return (((w & swar_lo7) + swar_ones * static_cast<std::uint8_t>(128 - c)) | w) & swar_hi;
}
// The high bits of the eight bytes packed into an 8-bit mask: bit 8i+7 moves to bit i. The multiplier has
// one set bit per byte, at 56 - 7i, so that byte i's bit lands on bit 56 + i; no two partial products share
// a bit, so nothing carries.
inline constexpr slot_mask swar_pack_high_bits(std::uint64_t hi) noexcept {
    return static_cast<slot_mask>(((hi >> 7) * 0x0102040810204080ULL) >> 56);
}

// Slots whose tophash equals `top`: the bytes of w ^ spread(top) that are zero, i.e. not >= 1.
inline constexpr slot_mask match_byte_swar(std::uint64_t w, std::uint8_t top) noexcept {
    return swar_pack_high_bits(~swar_bytes_at_least(w ^ (swar_ones * top), 1) & swar_hi);
}
// Slots holding a live entry (tophash >= min_top_hash).
inline constexpr slot_mask match_full_swar(std::uint64_t w) noexcept {
    return swar_pack_high_bits(swar_bytes_at_least(w, min_top_hash));
}
// Slots that are empty (empty_rest or empty_one): not >= empty_one + 1.
inline constexpr slot_mask match_empty_swar(std::uint64_t w) noexcept {
    return swar_pack_high_bits(~swar_bytes_at_least(w, empty_one + 1) & swar_hi);
}
inline slot_mask match_byte_swar(const std::uint8_t* t, std::uint8_t top) noexcept {
    return match_byte_swar(load_tophash_word(t), top);
}
inline slot_mask match_full_swar(const std::uint8_t* t) noexcept {
    return match_full_swar(load_tophash_word(t));
}
inline slot_mask match_empty_swar(const std::uint8_t* t) noexcept {
    return match_empty_swar(load_tophash_word(t));
}
static_assert(match_byte_swar(0x0500FF0505000005ULL, 5) == 0b10011001);
static_assert(match_full_swar(0x0500FF0504000105ULL) == 0b10110001);
static_assert(match_empty_swar(0x0500FF0504000105ULL) == 0b01000110);

#if defined(__SSE2__)
#define ITERLOCK_DETAIL_TOPHASH_SSE2 1
inline __m128i load_tophash(const std::uint8_t* t) noexcept {
    std::uint64_t w;
    std::memcpy(&w, t, 8);
    return _mm_cvtsi64_si128(static_cast<long long>(w));
}
// The byte is spread over the low 8 lanes by a multiply (two instructions; SSE2's set1 takes four); the high
// lanes are 0 in both operands and masked off.
inline slot_mask match_byte_sse2(const std::uint8_t* t, std::uint8_t top) noexcept {
    const __m128i spread = _mm_cvtsi64_si128(static_cast<long long>(top * swar_ones));
    const __m128i eq = _mm_cmpeq_epi8(load_tophash(t), spread);
    return static_cast<slot_mask>(_mm_movemask_epi8(eq)) & 0xFFu;
}
inline slot_mask match_full_sse2(const std::uint8_t* t) noexcept {
    const __m128i v = load_tophash(t);
    const __m128i ge = _mm_cmpeq_epi8(_mm_max_epu8(v, _mm_set1_epi8(min_top_hash)), v);
    return static_cast<slot_mask>(_mm_movemask_epi8(ge)) & 0xFFu;
}
inline slot_mask match_empty_sse2(const std::uint8_t* t) noexcept {
    const __m128i v = load_tophash(t);
    const __m128i le = _mm_cmpeq_epi8(_mm_min_epu8(v, _mm_set1_epi8(empty_one)), v);
    return static_cast<slot_mask>(_mm_movemask_epi8(le)) & 0xFFu;
}
#else
#define ITERLOCK_DETAIL_TOPHASH_SSE2 0
#endif

#if defined(__aarch64__) && defined(__ARM_NEON)
#define ITERLOCK_DETAIL_TOPHASH_NEON 1
// A lane compare gives 0xFF or 0 per slot; AND with the slot's own bit (1 << i in lane i) and a horizontal
// add (addv) packs the lanes into the mask, as pmovmskb does on x86. vld1_u8 reads lane i from t[i] on
// either byte order.
inline slot_mask neon_pack(uint8x8_t lanes) noexcept {
    static constexpr std::uint8_t bits[8] = {1, 2, 4, 8, 16, 32, 64, 128};
    return vaddv_u8(vand_u8(lanes, vld1_u8(bits)));
}
inline slot_mask match_byte_neon(const std::uint8_t* t, std::uint8_t top) noexcept {
    return neon_pack(vceq_u8(vld1_u8(t), vdup_n_u8(top)));
}
inline slot_mask match_full_neon(const std::uint8_t* t) noexcept {
    return neon_pack(vcge_u8(vld1_u8(t), vdup_n_u8(min_top_hash)));
}
inline slot_mask match_empty_neon(const std::uint8_t* t) noexcept {
    return neon_pack(vcle_u8(vld1_u8(t), vdup_n_u8(empty_one)));
}
#else
#define ITERLOCK_DETAIL_TOPHASH_NEON 0
#endif

// The selected matchers: the platform's twins, named once.
#if ITERLOCK_DETAIL_TOPHASH_SSE2
inline constexpr const char* tophash_match_path = "sse2";
#define ITERLOCK_DETAIL_TOPHASH_PICK(name) name##_sse2
#elif ITERLOCK_DETAIL_TOPHASH_NEON
inline constexpr const char* tophash_match_path = "neon";
#define ITERLOCK_DETAIL_TOPHASH_PICK(name) name##_neon
#else
inline constexpr const char* tophash_match_path = "swar";
#define ITERLOCK_DETAIL_TOPHASH_PICK(name) name##_swar
#endif
inline slot_mask match_byte(const std::uint8_t* t, std::uint8_t top) noexcept {
    return ITERLOCK_DETAIL_TOPHASH_PICK(match_byte)(t, top);
}
inline slot_mask match_full(const std::uint8_t* t) noexcept {
    return ITERLOCK_DETAIL_TOPHASH_PICK(match_full)(t);
}
inline slot_mask match_empty(const std::uint8_t* t) noexcept {
    return ITERLOCK_DETAIL_TOPHASH_PICK(match_empty)(t);
}
#undef ITERLOCK_DETAIL_TOPHASH_PICK

// Slots set in a mask (std::popcount is a library call on x86-64 builds without -mpopcnt).
inline constexpr unsigned slot_count(slot_mask m) noexcept {
    m = m - ((m >> 1) & 0x55u);
    m = (m & 0x33u) + ((m >> 2) & 0x33u);
    return (m + (m >> 4)) & 0x0Fu;
}
static_assert(slot_count(0xFFu) == 8 && slot_count(0xA5u) == 4 && slot_count(0) == 0);

// Whether any slot is empty_rest (a lookup can stop after this bucket).
inline bool has_empty_rest(const std::uint8_t* t) noexcept {
    return match_byte(t, empty_rest) != 0;
}

// An 8-bit slot mask in visiting order from slot r: bit j (r <= j < r + 8) stands for slot j & 7, so the
// lowest set bit is the next slot in the order r, r+1, ... (mod 8) that Go's iterator uses, and the slot is
// the bit's index & 7 (no add of r per step).
inline constexpr slot_mask order_from(slot_mask m, unsigned r) noexcept {
    return (m | (m << 8)) & (0xFFu << (r & 7));
}
static_assert(order_from(0x81u, 0) == 0x81u && order_from(0x81u, 1) == 0x180u &&
              order_from(0xFFu, 7) == 0x7F80u);

}  // namespace iterlock::detail
