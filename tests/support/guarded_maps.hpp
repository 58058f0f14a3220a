// tests/support/guarded_maps.hpp: the maps the guarded suites wrap, and their names in test output.
//
// Owns: iterlock::test::guarded_maps (a ::testing::Types list), guarded_map_names.
#pragma once

#include <absl/container/flat_hash_map.h>

#include <boost/unordered/unordered_flat_map.hpp>
#include <string>
#include <unordered_map>

#include <gtest/gtest.h>

namespace iterlock::test {

// The three maps of issue 15, with key and mapped type T.
template <class T>
using guarded_maps =
    ::testing::Types<std::unordered_map<T, T>, absl::flat_hash_map<T, T>, boost::unordered_flat_map<T, T>>;

// Names for TYPED_TEST_SUITE, in guarded_maps' order.
struct guarded_map_names {
    template <class Map>
    static std::string GetName(int i) {
        return i == 0 ? "std_unordered_map" : i == 1 ? "absl_flat_hash_map" : "boost_unordered_flat_map";
    }
};

}  // namespace iterlock::test
