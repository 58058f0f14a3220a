// tests/support/misuse_action_scope.hpp: sets the process-wide misuse action (iterlock/misuse.hpp) for one
// test and restores the previous one when the test ends.
//
// Owns: iterlock::test::misuse_action_scope. Invariant: scopes nest (each restores what it found).
#pragma once

#include "iterlock/misuse.hpp"

namespace iterlock::test {

// Sets the process-wide misuse action for one test and restores the previous one.
class misuse_action_scope {
  public:
    explicit misuse_action_scope(iterlock::misuse_action a) : saved_(iterlock::get_misuse_action()) {
        iterlock::set_misuse_action(a);
    }
    misuse_action_scope(const misuse_action_scope&) = delete;
    misuse_action_scope& operator=(const misuse_action_scope&) = delete;
    ~misuse_action_scope() { iterlock::set_misuse_action(saved_); }

  private:
    iterlock::misuse_action saved_;
};

}  // namespace iterlock::test
