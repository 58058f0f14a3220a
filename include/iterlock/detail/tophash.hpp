// tophash: the one-byte summary Go keeps for each slot of a bucket, and the 8-wide matchers over it.
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
// The eight bytes of a bucket are matched at once: SSE2 where the compiler targets it, SWAR otherwise.
#pragma once

#include <cstdint>
#include <cstring>

#if defined(__SSE2__)
#include <emmintrin.h>
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

#if defined(__SSE2__)
inline __m128i load_tophash(const std::uint8_t* t) noexcept {
    std::uint64_t w;
    std::memcpy(&w, t, 8);
    return _mm_cvtsi64_si128(static_cast<long long>(w));
}
// Slots whose tophash equals `top`. The byte is spread over the low 8 lanes by a multiply (two
// instructions; SSE2's set1 takes four); the high lanes are 0 in both operands and masked off.
inline slot_mask match_byte(const std::uint8_t* t, std::uint8_t top) noexcept {
    const __m128i spread = _mm_cvtsi64_si128(static_cast<long long>(top * 0x0101010101010101ULL));
    const __m128i eq = _mm_cmpeq_epi8(load_tophash(t), spread);
    return static_cast<slot_mask>(_mm_movemask_epi8(eq)) & 0xFFu;
}
// Slots holding a live entry (tophash >= min_top_hash).
inline slot_mask match_full(const std::uint8_t* t) noexcept {
    const __m128i v = load_tophash(t);
    const __m128i ge = _mm_cmpeq_epi8(_mm_max_epu8(v, _mm_set1_epi8(min_top_hash)), v);
    return static_cast<slot_mask>(_mm_movemask_epi8(ge)) & 0xFFu;
}
// Slots that are empty (empty_rest or empty_one).
inline slot_mask match_empty(const std::uint8_t* t) noexcept {
    const __m128i v = load_tophash(t);
    const __m128i le = _mm_cmpeq_epi8(_mm_min_epu8(v, _mm_set1_epi8(empty_one)), v);
    return static_cast<slot_mask>(_mm_movemask_epi8(le)) & 0xFFu;
}
#else
inline slot_mask match_byte(const std::uint8_t* t, std::uint8_t top) noexcept {
    slot_mask m = 0;
    for (unsigned i = 0; i < bucket_cnt; ++i) m |= slot_mask{t[i] == top} << i;
    return m;
}
inline slot_mask match_full(const std::uint8_t* t) noexcept {
    slot_mask m = 0;
    for (unsigned i = 0; i < bucket_cnt; ++i) m |= slot_mask{is_full(t[i])} << i;
    return m;
}
inline slot_mask match_empty(const std::uint8_t* t) noexcept {
    slot_mask m = 0;
    for (unsigned i = 0; i < bucket_cnt; ++i) m |= slot_mask{is_empty(t[i])} << i;
    return m;
}
#endif

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

// Rotates an 8-bit slot mask right by r: bit (i + r) & 7 moves to bit i. Iteration visits slots in the
// order offset, offset+1, ... (mod 8), as Go's iterator does.
inline constexpr slot_mask rotate_mask(slot_mask m, unsigned r) noexcept {
    r &= 7;
    return ((m >> r) | (m << (8 - r))) & 0xFFu;
}

}  // namespace iterlock::detail
