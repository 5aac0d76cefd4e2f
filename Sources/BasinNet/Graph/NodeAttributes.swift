import Foundation

/// A JSON value, for the op-specific keys of an architecture file's nodes.
public enum JSONValue: Sendable, Equatable, Codable {
    case string(String)
    case number(Double)
    case bool(Bool)
    case array([JSONValue])
    case object([String: JSONValue])
    case null

    public init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        if c.decodeNil() { self = .null }
        else if let b = try? c.decode(Bool.self) { self = .bool(b) }
        else if let n = try? c.decode(Double.self) { self = .number(n) }
        else if let s = try? c.decode(String.self) { self = .string(s) }
        else if let a = try? c.decode([JSONValue].self) { self = .array(a) }
        else { self = .object(try c.decode([String: JSONValue].self)) }
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        switch self {
        case let .string(s): try c.encode(s)
        case let .number(n):
            if n == n.rounded(), abs(n) < 1e15 { try c.encode(Int(n)) } else { try c.encode(n) }
        case let .bool(b): try c.encode(b)
        case let .array(a): try c.encode(a)
        case let .object(o): try c.encode(o)
        case .null: try c.encodeNil()
        }
    }

    public static func int(_ v: Int) -> JSONValue { .number(Double(v)) }
    public static func ints(_ v: [Int]) -> JSONValue { .array(v.map { .number(Double($0)) }) }

    var kindName: String {
        switch self {
        case .string: "a string"
        case .number: "a number"
        case .bool: "a boolean"
        case .array: "an array"
        case .object: "an object"
        case .null: "null"
        }
    }
}

/// An architecture file node's op-specific keys, read by the op (`Op.read`). Every getter records the
/// key as used; keys no getter asked for are reported as unknown (a typo must not be ignored silently).
public struct NodeAttributes: Sendable {
    public let node: String
    public let op: String
    public let file: String
    public let values: [String: JSONValue]
    public private(set) var used: Set<String> = []

    public init(node: String, op: String, file: String, values: [String: JSONValue]) {
        self.node = node
        self.op = op
        self.file = file
        self.values = values
    }

    public func error(_ key: String, _ problem: String) -> NetworkError {
        NetworkError(.badAttribute, file: file, node: node, key: key, problem)
    }

    private mutating func value(_ key: String) -> JSONValue? {
        used.insert(key)
        if case .null? = values[key] { return nil }
        return values[key]
    }

    /// Whether the key is present (null included).
    public func has(_ key: String) -> Bool { values[key] != nil }

    public mutating func string(_ key: String) throws -> String {
        guard let s = try optionalString(key) else { throw error(key, "\(op) node needs this key (a tensor name)") }
        return s
    }

    public mutating func optionalString(_ key: String) throws -> String? {
        guard let v = value(key) else { return nil }
        guard case let .string(s) = v else { throw error(key, "must be a string, not \(v.kindName)") }
        return s
    }

    public mutating func optionalInt(_ key: String, minimum: Int? = nil) throws -> Int? {
        guard let v = value(key) else { return nil }
        guard case let .number(n) = v, n == n.rounded(), abs(n) < 1e9 else { throw error(key, "must be an integer, not \(v)") }
        if let minimum, Int(n) < minimum { throw error(key, "must be at least \(minimum), not \(Int(n))") }
        return Int(n)
    }

    public mutating func int(_ key: String, default d: Int, minimum: Int? = nil) throws -> Int {
        try optionalInt(key, minimum: minimum) ?? d
    }

    /// An integer or a list of `count` integers (a list of one repeated), e.g. a kernel size 3 or [3, 3].
    public mutating func optionalInts(_ key: String, count: Int, minimum: Int? = nil) throws -> [Int]? {
        guard let v = value(key) else { return nil }
        func one(_ x: JSONValue) throws -> Int {
            guard case let .number(n) = x, n == n.rounded(), abs(n) < 1e9 else {
                throw error(key, "must be an integer or a list of \(count) integers, not \(v)")
            }
            if let minimum, Int(n) < minimum { throw error(key, "must be at least \(minimum), not \(Int(n))") }
            return Int(n)
        }
        switch v {
        case .number: return Array(repeating: try one(v), count: count)
        case let .array(a) where a.count == count: return try a.map(one)
        case let .array(a) where a.count == 1: return Array(repeating: try one(a[0]), count: count)
        default: throw error(key, "must be an integer or a list of \(count) integers, not \(v)")
        }
    }

    /// A list of integers of any length, where -1 or null stands for an unknown dimension.
    public mutating func optionalShape(_ key: String) throws -> SampleShape? {
        guard let v = value(key) else { return nil }
        guard case let .array(a) = v else { throw error(key, "must be a list of dimensions, not \(v.kindName)") }
        return try a.map { x -> Int? in
            switch x {
            case .null: return nil
            case let .number(n) where n == n.rounded() && n == -1: return nil
            case let .number(n) where n == n.rounded() && n >= 1 && n < 1e9: return Int(n)
            default: throw error(key, "dimensions must be positive integers (or -1 / null for unknown), not \(x)")
            }
        }
    }

    public mutating func optionalDouble(_ key: String) throws -> Double? {
        guard let v = value(key) else { return nil }
        guard case let .number(n) = v else { throw error(key, "must be a number, not \(v.kindName)") }
        return n
    }

    public mutating func double(_ key: String, default d: Double) throws -> Double {
        try optionalDouble(key) ?? d
    }

    public mutating func bool(_ key: String, default d: Bool) throws -> Bool {
        guard let v = value(key) else { return d }
        guard case let .bool(b) = v else { throw error(key, "must be true or false, not \(v.kindName)") }
        return b
    }

    /// Keys present but never read.
    public var unusedKeys: [String] { values.keys.filter { !used.contains($0) }.sorted() }
}
