// The tophash matchers (detail/map/tophash.hpp): the SWAR twin, the vector version this CPU selects (SSE2 on
// x86-64, NEON on aarch64) and the selected name all give the mask of a byte-at-a-time reference, on every
// byte pattern where a lane-parallel trick can go wrong.
#include <gtest/gtest.h>

#include <array>
#include <bit>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>

#include "iterlock/detail/map/test_access.hpp"

namespace {

namespace d = iterlock::detail;
using bytes = std::array<std::uint8_t, d::bucket_cnt>;

// The reference: one slot at a time, straight from the definitions of the states.
d::slot_mask ref_byte(const bytes& t, std::uint8_t top) {
    d::slot_mask m = 0;
    for (unsigned i = 0; i < d::bucket_cnt; ++i) m |= d::slot_mask{t[i] == top} << i;
    return m;
}
d::slot_mask ref_full(const bytes& t) {
    d::slot_mask m = 0;
    for (unsigned i = 0; i < d::bucket_cnt; ++i) m |= d::slot_mask{t[i] >= d::min_top_hash} << i;
    return m;
}
d::slot_mask ref_empty(const bytes& t) {
    d::slot_mask m = 0;
    for (unsigned i = 0; i < d::bucket_cnt; ++i)
        m |= d::slot_mask{t[i] == d::empty_rest || t[i] == d::empty_one} << i;
    return m;
}

std::string show(const bytes& t) {
    std::string s;
    for (std::uint8_t b : t) s += std::to_string(b) + ' ';
    return s;
}

// Checks every implementation of the three matchers on one pattern (and match_byte for one `top`). Returns
// false after the first mismatch, so an exhaustive loop stops at the first failure instead of printing
// millions.
bool agrees(const bytes& t, std::uint8_t top) {
    // Read from an unaligned copy: buckets keep their tophash bytes at any offset of a control array.
    alignas(16) std::uint8_t buf[d::bucket_cnt + 1];
    std::memcpy(buf + 1, t.data(), d::bucket_cnt);
    const std::uint8_t* p = buf + 1;

    const d::slot_mask want_byte = ref_byte(t, top), want_full = ref_full(t), want_empty = ref_empty(t);
    bool ok = true;
    auto check = [&](const char* impl, const char* fn, d::slot_mask got, d::slot_mask want) {
        if (got == want) return;
        ADD_FAILURE() << impl << ' ' << fn << " on [" << show(t) << "] top " << int{top} << ": got 0x"
                      << std::hex << got << ", want 0x" << want;
        ok = false;
    };
    check("swar", "match_byte", d::match_byte_swar(p, top), want_byte);
    check("swar", "match_full", d::match_full_swar(p), want_full);
    check("swar", "match_empty", d::match_empty_swar(p), want_empty);
#if ITERLOCK_DETAIL_TOPHASH_SSE2
    check("sse2", "match_byte", d::match_byte_sse2(p, top), want_byte);
    check("sse2", "match_full", d::match_full_sse2(p), want_full);
    check("sse2", "match_empty", d::match_empty_sse2(p), want_empty);
#endif
#if ITERLOCK_DETAIL_TOPHASH_NEON
    check("neon", "match_byte", d::match_byte_neon(p, top), want_byte);
    check("neon", "match_full", d::match_full_neon(p), want_full);
    check("neon", "match_empty", d::match_empty_neon(p), want_empty);
#endif
    check(d::tophash_match_path, "match_byte", d::match_byte(p, top), want_byte);
    check(d::tophash_match_path, "match_full", d::match_full(p), want_full);
    check(d::tophash_match_path, "match_empty", d::match_empty(p), want_empty);
    check(d::tophash_match_path, "has_empty_rest", d::slot_mask{d::has_empty_rest(p)},
          d::slot_mask{ref_byte(t, d::empty_rest) != 0});
    return ok;
}

// The values where the tricks have edges: the five reserved states and the first live value (the >= and <=
// thresholds), the sign-bit edge (127/128: SWAR masks the high bit, SSE2 compares unsigned), the top value
// (255: carries), and one ordinary live value.
constexpr std::array<std::uint8_t, 10> edges = {0, 1, 2, 4, 5, 6, 0x7F, 0x80, 0xFE, 0xFF};

TEST(TophashMatch, SelectedPathIsTheVectorOneOfThisCpu) {
#if defined(__x86_64__)
    EXPECT_STREQ(d::tophash_match_path, "sse2");
#elif defined(__aarch64__)
    EXPECT_STREQ(d::tophash_match_path, "neon");
#endif
    std::printf("tophash matchers: %s (swar twin tested too)\n", d::tophash_match_path);
}

// Every byte value in every slot, with the other seven slots filled with each edge value, for every `top`
// that differs from the filler by little (the carry and borrow cases) and the edges.
TEST(TophashMatch, EveryValueInEverySlotAgainstEdgeNeighbours) {
    for (std::uint8_t fill : edges) {
        for (unsigned slot = 0; slot < d::bucket_cnt; ++slot) {
            for (unsigned v = 0; v < 256; ++v) {
                bytes t;
                t.fill(fill);
                t[slot] = static_cast<std::uint8_t>(v);
                for (std::uint8_t top : {static_cast<std::uint8_t>(v), static_cast<std::uint8_t>(v + 1),
                                         static_cast<std::uint8_t>(v - 1), fill, std::uint8_t{0},
                                         std::uint8_t{5}, std::uint8_t{0x80}, std::uint8_t{0xFF}}) {
                    if (!agrees(t, top)) return;
                }
            }
        }
    }
}

// Two neighbouring slots over all 256 x 256 values (a carry or borrow out of one byte lands in the next),
// the rest empty_rest, matched against tops equal to either byte.
TEST(TophashMatch, EveryPairOfNeighbouringSlots) {
    for (unsigned slot = 0; slot + 1 < d::bucket_cnt; slot += 3) {  // slots 0-1, 3-4, 6-7
        for (unsigned a = 0; a < 256; ++a) {
            for (unsigned b = 0; b < 256; ++b) {
                bytes t{};
                t[slot] = static_cast<std::uint8_t>(a);
                t[slot + 1] = static_cast<std::uint8_t>(b);
                if (!agrees(t, static_cast<std::uint8_t>(a)) || !agrees(t, static_cast<std::uint8_t>(b)))
                    return;
            }
        }
    }
}

// All 10^8 patterns of edge values would take too long under an emulator: every pattern over the six
// values that decide the three predicates (0, 1, 4, 5, 0x80, 0xFF: 6^8 = 1.7M) for the first four slots
// combined with the same for the last four would still be 10^12; instead every pattern of four values
// {0, 1, 5, 0xFF} over all eight slots (4^8 = 65536), each matched against every edge as top.
TEST(TophashMatch, EveryPatternOfStateValues) {
    constexpr std::array<std::uint8_t, 4> vals = {0, 1, 5, 0xFF};
    for (unsigned code = 0; code < (1u << (2 * d::bucket_cnt)); ++code) {
        bytes t;
        for (unsigned i = 0; i < d::bucket_cnt; ++i) t[i] = vals[(code >> (2 * i)) & 3u];
        for (std::uint8_t top : edges)
            if (!agrees(t, top)) return;
    }
}

// Random buckets drawn mostly from the edge values, as a table holds them (live bytes and empties mixed).
TEST(TophashMatch, RandomBuckets) {
    std::mt19937_64 rng(0x7091a5);
    for (int n = 0; n < 200000; ++n) {
        bytes t;
        for (auto& b : t) {
            const std::uint64_t r = rng();
            b = (r & 3u) == 0 ? static_cast<std::uint8_t>(r >> 8) : edges[(r >> 8) % edges.size()];
        }
        const std::uint8_t top = (n & 1) ? t[rng() % d::bucket_cnt] : static_cast<std::uint8_t>(rng());
        if (!agrees(t, top)) return;
    }
}

// order_from: taking the lowest bit and & 7, again and again, visits exactly the slots of the mask, in the
// order r, r+1, ... (mod 8) that a walk starting at slot offset r uses (every mask, every offset).
TEST(TophashOrder, LowestBitsVisitTheMaskFromTheOffsetOnward) {
    for (unsigned m = 0; m < 256; ++m) {
        for (unsigned r = 0; r < d::bucket_cnt; ++r) {
            std::string want, got;
            for (unsigned k = 0; k < d::bucket_cnt; ++k) {
                const unsigned slot = (r + k) % d::bucket_cnt;
                if ((m >> slot) & 1u) want += static_cast<char>('0' + slot);
            }
            for (d::slot_mask p = d::order_from(m, r); p != 0; p &= p - 1)
                got += static_cast<char>('0' + (std::countr_zero(p) & (d::bucket_cnt - 1)));
            ASSERT_EQ(got, want) << "mask " << m << " offset " << r;
        }
    }
}

}  // namespace
