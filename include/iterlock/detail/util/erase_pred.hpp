// iterlock/detail/util/erase_pred.hpp: the predicate of erase_if, in either of the two forms the maps
// accept, as one test over a slot.
//
// Owns: iterlock::detail::slot_test.
// Invariants: pred(const K&, V&) is preferred when it is callable that way, else pred(std::pair<const K,
//       V>&); the adapter holds a reference to the caller's predicate and never copies it.
#pragma once

#include <type_traits>
#include <utility>

namespace iterlock::detail {

template <class K, class V, class Pred>
struct slot_test {
    Pred& pred;
    bool operator()(std::pair<const K, V>& e) const {
        if constexpr (std::is_invocable_r_v<bool, Pred&, const K&, V&>) {
            return pred(e.first, e.second);
        } else {
            return pred(e);
        }
    }
};

}  // namespace iterlock::detail
