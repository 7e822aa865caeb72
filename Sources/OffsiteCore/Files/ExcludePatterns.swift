import Foundation

/// The `exclude` patterns of a file set, matched against paths relative to the set's root:
/// - a pattern without `/` matches a file or folder name at any depth (`*.tmp`, `.DS_Store`);
/// - a pattern with a `/` matches the whole relative path (`cache/**`, `exports/*.csv`; a leading
///   `/` is dropped: `/tmp` is only the root's `tmp`);
/// - a trailing `/` makes it match folders only (`build/`);
/// - `*` is any run of characters but `/`, `?` one character but `/`, `[abc]`, `[a-z]`, `[!a]`
///   a class, `\` quotes the next character, and `**` as a whole part any number of folders
///   (`cache/**` is everything inside `cache`, `**/thumbs` a `thumbs` at any depth).
/// An excluded folder is left out whole.
public struct ExcludePatterns: Sendable, Equatable {
    /// One parsed pattern.
    struct Pattern: Sendable, Equatable {
        /// Whether it is matched against the whole path (it had a `/`), else against the name.
        var anchored: Bool
        /// Whether it matches folders only.
        var foldersOnly: Bool
        /// The parts between `/`.
        var parts: [[UInt8]]
    }

    /// The patterns as written.
    public let texts: [String]
    let patterns: [Pattern]

    /// Parses `texts`; throws a message naming the first pattern that cannot be used.
    public init(_ texts: [String]) throws {
        self.texts = texts
        var patterns: [Pattern] = []
        for text in texts {
            var bytes = Array(text.utf8)
            var foldersOnly = false
            while bytes.count > 1, bytes.last == UInt8(ascii: "/") {
                foldersOnly = true
                bytes.removeLast()
            }
            var anchored = bytes.contains(UInt8(ascii: "/"))
            if bytes.first == UInt8(ascii: "/") {
                bytes.removeFirst()
                anchored = true
            }
            guard !bytes.isEmpty, bytes != [UInt8(ascii: "/")] else {
                throw ExcludePatternError(pattern: text, problem: "matches nothing (empty)")
            }
            let parts = bytes.split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: false).map(Array.init)
            if parts.contains(where: \.isEmpty) {
                throw ExcludePatternError(pattern: text, problem: "has an empty part (//)")
            }
            patterns.append(Pattern(anchored: anchored, foldersOnly: foldersOnly, parts: parts))
        }
        self.patterns = patterns
    }

    /// No patterns.
    public static let none = try! ExcludePatterns([])

    /// Whether the entry at `path` (relative to the root, parts joined by `/`; never the root
    /// itself) is excluded; `isFolder` says whether it is a folder.
    public func excludes(_ path: [UInt8], isFolder: Bool) -> Bool {
        guard !patterns.isEmpty else { return false }
        let parts = path.split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: false)
        for pattern in patterns where !pattern.foldersOnly || isFolder {
            if pattern.anchored {
                if ExcludePatterns.match(pattern.parts[...], parts[...]) { return true }
            } else if let name = parts.last, ExcludePatterns.matchPart(pattern.parts[0][...], name) {
                return true
            }
        }
        return false
    }

    /// Whether the pattern's parts match the path's parts, `**` spanning any number of parts.
    static func match(_ pattern: ArraySlice<[UInt8]>, _ path: ArraySlice<ArraySlice<UInt8>>) -> Bool {
        guard let first = pattern.first else { return path.isEmpty }
        if first == Array("**".utf8) {
            let rest = pattern.dropFirst()
            // `a/**` needs at least one part below `a`; `**/b` and `a/**/b` take zero or more.
            let least = rest.isEmpty ? 1 : 0
            var skip = least
            while skip <= path.count {
                if match(rest, path.dropFirst(skip)) { return true }
                skip += 1
            }
            return false
        }
        guard let part = path.first, matchPart(first[...], part) else { return false }
        return match(pattern.dropFirst(), path.dropFirst())
    }

    /// Whether one name matches one pattern part (`*`, `?`, classes, `\` quoting).
    static func matchPart(_ pattern: ArraySlice<UInt8>, _ name: ArraySlice<UInt8>) -> Bool {
        var p = pattern.startIndex
        var n = name.startIndex
        var starP: Int?
        var starN = name.startIndex
        while n < name.endIndex {
            if p < pattern.endIndex {
                let token = pattern[p]
                if token == UInt8(ascii: "*") {
                    starP = p
                    starN = n
                    p += 1
                    continue
                }
                if let (matched, next) = matchOne(pattern, at: p, name[n]), matched {
                    p = next
                    n += 1
                    continue
                }
            }
            guard let star = starP else { return false }
            p = star + 1
            starN += 1
            n = starN
        }
        while p < pattern.endIndex, pattern[p] == UInt8(ascii: "*") { p += 1 }
        return p == pattern.endIndex
    }

    /// Whether the pattern token at `index` (not `*`) matches `byte`, and where the next token starts.
    private static func matchOne(_ pattern: ArraySlice<UInt8>, at index: Int, _ byte: UInt8) -> (Bool, Int)? {
        let token = pattern[index]
        switch token {
        case UInt8(ascii: "?"):
            return (true, index + 1)
        case UInt8(ascii: "\\") where index + 1 < pattern.endIndex:
            return (pattern[index + 1] == byte, index + 2)
        case UInt8(ascii: "["):
            var cursor = index + 1
            var negated = false
            if cursor < pattern.endIndex, pattern[cursor] == UInt8(ascii: "!") || pattern[cursor] == UInt8(ascii: "^") {
                negated = true
                cursor += 1
            }
            var matched = false
            var first = true
            while cursor < pattern.endIndex, pattern[cursor] != UInt8(ascii: "]") || first {
                first = false
                let low = pattern[cursor]
                if cursor + 2 < pattern.endIndex, pattern[cursor + 1] == UInt8(ascii: "-"), pattern[cursor + 2] != UInt8(ascii: "]") {
                    if low <= byte && byte <= pattern[cursor + 2] { matched = true }
                    cursor += 3
                } else {
                    if low == byte { matched = true }
                    cursor += 1
                }
            }
            // No closing bracket: the `[` is an ordinary character.
            guard cursor < pattern.endIndex else { return (token == byte, index + 1) }
            return (matched != negated, cursor + 1)
        default:
            return (token == byte, index + 1)
        }
    }
}

/// An exclude pattern that cannot be used.
public struct ExcludePatternError: Error, Equatable {
    /// The pattern as written.
    public var pattern: String
    /// What is wrong with it.
    public var problem: String
}
