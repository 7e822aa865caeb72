import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Where the control endpoint listens: a numeric IPv4 or IPv6 address and a port, parsed from
/// `127.0.0.1:8080`, `[::1]:8080`, `0.0.0.0:8080` or `localhost:8080`.
public struct ListenAddress: Sendable, Equatable, CustomStringConvertible {
    /// The address family.
    public enum Family: Sendable, Equatable {
        /// IPv4 (`127.0.0.1`).
        case ipv4
        /// IPv6 (`::1`).
        case ipv6
    }

    /// The numeric host (`127.0.0.1`, `::1`), without brackets.
    public var host: String
    /// The TCP port, 1…65535.
    public var port: Int
    /// The address family of `host`.
    public var family: Family

    /// Parses `HOST:PORT`; HOST is a numeric IPv4 address, a bracketed IPv6 address or
    /// `localhost` (127.0.0.1). Throws `ListenAddressError` saying what is wrong.
    public init(parsing text: String) throws(ListenAddressError) {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        let hostPart: Substring
        let portPart: Substring
        if trimmed.hasPrefix("[") {
            guard let close = trimmed.firstIndex(of: "]") else {
                throw ListenAddressError("\"\(trimmed)\" has no closing ] after the IPv6 address")
            }
            hostPart = trimmed[trimmed.index(after: trimmed.startIndex)..<close]
            let rest = trimmed[trimmed.index(after: close)...]
            guard rest.hasPrefix(":") else { throw ListenAddressError("\"\(trimmed)\" has no :PORT after the address") }
            portPart = rest.dropFirst()
        } else {
            guard let colon = trimmed.lastIndex(of: ":") else {
                throw ListenAddressError("\"\(trimmed)\" has no port (expected HOST:PORT)")
            }
            hostPart = trimmed[..<colon]
            portPart = trimmed[trimmed.index(after: colon)...]
            if hostPart.contains(":") {
                throw ListenAddressError("\"\(trimmed)\": write an IPv6 address in brackets, as [::1]:8080")
            }
        }
        guard !portPart.isEmpty, portPart.allSatisfy({ $0.isASCII && $0.isNumber }), portPart.count <= 5,
              let port = Int(portPart), (1...65535).contains(port) else {
            throw ListenAddressError("\"\(portPart)\" is not a port between 1 and 65535")
        }
        var host = String(hostPart)
        if host.isEmpty { throw ListenAddressError("\"\(trimmed)\" has no address before the port") }
        if host.lowercased() == "localhost" { host = "127.0.0.1" }
        if ListenAddress.ipv4Bytes(host) != nil {
            family = .ipv4
        } else if ListenAddress.ipv6Bytes(host) != nil {
            family = .ipv6
        } else {
            throw ListenAddressError("\"\(host)\" is not a numeric IP address (or localhost)")
        }
        self.host = host
        self.port = port
    }

    /// Whether only this machine can connect: 127.0.0.0/8, ::1, or an IPv4-mapped 127.x address.
    public var isLoopback: Bool {
        switch family {
        case .ipv4:
            return ListenAddress.ipv4Bytes(host)?.first == 127
        case .ipv6:
            guard let bytes = ListenAddress.ipv6Bytes(host) else { return false }
            if bytes == [UInt8](repeating: 0, count: 15) + [1] { return true }
            let mapped = [UInt8](repeating: 0, count: 10) + [0xFF, 0xFF]
            return Array(bytes.prefix(12)) == mapped && bytes[12] == 127
        }
    }

    /// `127.0.0.1:8080` or `[::1]:8080`.
    public var description: String {
        family == .ipv6 ? "[\(host)]:\(port)" : "\(host):\(port)"
    }

    /// The four bytes of a dotted IPv4 address, or nil.
    static func ipv4Bytes(_ text: String) -> [UInt8]? {
        var address = in_addr()
        guard inet_pton(AF_INET, text, &address) == 1 else { return nil }
        return withUnsafeBytes(of: address) { Array($0) }
    }

    /// The sixteen bytes of an IPv6 address, or nil.
    static func ipv6Bytes(_ text: String) -> [UInt8]? {
        var address = in6_addr()
        guard inet_pton(AF_INET6, text, &address) == 1 else { return nil }
        return withUnsafeBytes(of: address) { Array($0) }
    }
}

/// Why a listen address could not be parsed.
public struct ListenAddressError: Error, Equatable {
    /// What is wrong, naming the text.
    public var problem: String

    /// Creates an error.
    public init(_ problem: String) {
        self.problem = problem
    }
}
