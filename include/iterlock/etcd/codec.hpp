// iterlock/etcd/codec.hpp: how iterlock::etcd::map turns keys and values into etcd's bytes and back.
//
// Owns: codec<T> (the per-type encoding, user-specializable) and default_codec (the map's Codec parameter,
// which forwards to codec<K> and codec<V>).
// Rules:
//   K1  Integers: sizeof(T) bytes, big-endian, the sign bit flipped for signed types, so etcd's byte order
//       of keys is the integers' numeric order.
//   K2  std::string: its bytes as they are.
//   K3  Other trivially copyable types: their object representation (sizeof(T) bytes, this machine's byte
//       order: readers and writers must share the architecture).
//   K4  decode() returns false (the map counts a decode error and skips the entry) on a size mismatch;
//       it never reads past the given bytes.
// To store another type, specialize iterlock::etcd::codec<T> with the same two static functions.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <type_traits>

namespace iterlock::etcd {

template <class T, class Enable = void>
struct codec;  // specialize: static std::string encode(const T&); static bool decode(std::string_view, T&);

template <class T>
struct codec<T, std::enable_if_t<std::is_integral_v<T> && !std::is_same_v<T, bool>>> {
    using U = std::make_unsigned_t<T>;
    static constexpr U flip = std::is_signed_v<T> ? static_cast<U>(U{1} << (sizeof(T) * 8 - 1)) : U{0};
    static std::string encode(const T& v) {
        U u = static_cast<U>(static_cast<U>(v) ^ flip);
        std::string s(sizeof(T), '\0');
        for (std::size_t i = sizeof(T); i-- > 0;) {
            s[i] = static_cast<char>(u & 0xff);
            if constexpr (sizeof(T) > 1) u = static_cast<U>(u >> 8);
        }
        return s;
    }
    static bool decode(std::string_view s, T& out) {
        if (s.size() != sizeof(T)) return false;
        U u = 0;
        for (char c : s) {
            if constexpr (sizeof(T) > 1) u = static_cast<U>(u << 8);
            u = static_cast<U>(u | static_cast<unsigned char>(c));
        }
        out = static_cast<T>(static_cast<U>(u ^ flip));
        return true;
    }
};

template <>
struct codec<std::string> {
    static std::string encode(const std::string& v) { return v; }
    static bool decode(std::string_view s, std::string& out) {
        out.assign(s.data(), s.size());
        return true;
    }
};

template <class T>
struct codec<T, std::enable_if_t<std::is_trivially_copyable_v<T> && !std::is_integral_v<T>>> {
    static std::string encode(const T& v) {
        std::string s(sizeof(T), '\0');
        std::memcpy(s.data(), &v, sizeof(T));
        return s;
    }
    static bool decode(std::string_view s, T& out) {
        if (s.size() != sizeof(T)) return false;
        std::memcpy(&out, s.data(), sizeof(T));
        return true;
    }
};

// The map's default Codec: codec<T> for both keys and values.
struct default_codec {
    template <class T>
    static std::string encode(const T& v) {
        return codec<T>::encode(v);
    }
    template <class T>
    static bool decode(std::string_view s, T& out) {
        return codec<T>::decode(s, out);
    }
};

}  // namespace iterlock::etcd
