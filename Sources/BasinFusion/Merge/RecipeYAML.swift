import Foundation
import Yams

/// A YAML document read with bounds: at most `maximumBytes` of text, `maximumNodes` nodes after alias
/// expansion and `maximumDepth` levels, so a 500-byte alias bomb is refused instead of growing to gigabytes.
/// Yams composes aliases as shared references (cheap); the walk below is where expansion would happen, and it
/// stops at the budget.
enum RecipeYAML {
    static let maximumBytes = 1 << 20
    static let maximumNodes = 100_000
    static let maximumDepth = 64

    /// A parsed value with its resolved YAML type.
    indirect enum Value {
        case null
        case bool(Bool)
        case number(Double)
        case string(String)
        case list([Value])
        case map([(String, Value)])

        var typeName: String {
            switch self {
            case .null: "null"
            case .bool: "a boolean"
            case .number: "a number"
            case .string: "a string"
            case .list: "a list"
            case .map: "a mapping"
            }
        }

        subscript(key: String) -> Value? {
            if case let .map(pairs) = self { return pairs.first { $0.0 == key }?.1 }
            return nil
        }

        var keys: [String] {
            if case let .map(pairs) = self { return pairs.map(\.0) }
            return []
        }
    }

    static func parse(_ text: String, file: String) throws -> Value {
        guard text.utf8.count <= maximumBytes else {
            throw MergeError(.malformedRecipe, file: file, "is \(text.utf8.count) bytes; a recipe may be at most \(maximumBytes) bytes")
        }
        let node: Node?
        do { node = try Yams.compose(yaml: text) } catch {
            throw MergeError(.malformedRecipe, file: file, "is not valid YAML (\(error))")
        }
        guard let node else { throw MergeError(.malformedRecipe, file: file, "is empty") }
        var budget = maximumNodes
        return try convert(node, depth: 0, budget: &budget, file: file)
    }

    private static func convert(_ node: Node, depth: Int, budget: inout Int, file: String) throws -> Value {
        budget -= 1
        guard budget >= 0 else {
            throw MergeError(.malformedRecipe, file: file, "expands to more than \(maximumNodes) YAML nodes (aliases repeated too often?); refused")
        }
        guard depth <= maximumDepth else {
            throw MergeError(.malformedRecipe, file: file, "is nested more than \(maximumDepth) levels deep; refused")
        }
        switch node {
        case let .scalar(s):
            switch node.tag.description {
            case Tag.Name.null.rawValue: return .null
            case Tag.Name.bool.rawValue: return node.bool.map(Value.bool) ?? .string(s.string)
            case Tag.Name.int.rawValue, Tag.Name.float.rawValue: return node.float.map(Value.number) ?? .string(s.string)
            default: return .string(s.string)
            }
        case let .sequence(seq):
            var items: [Value] = []
            for child in seq { items.append(try convert(child, depth: depth + 1, budget: &budget, file: file)) }
            return .list(items)
        case let .mapping(map):
            var pairs: [(String, Value)] = []
            for (k, v) in map {
                guard let key = k.string, case .scalar = k else {
                    throw MergeError(.malformedRecipe, file: file, "has a mapping key that is not a plain string")
                }
                if pairs.contains(where: { $0.0 == key }) {
                    throw MergeError(.malformedRecipe, file: file, key: key, "appears twice in the same mapping")
                }
                pairs.append((key, try convert(v, depth: depth + 1, budget: &budget, file: file)))
            }
            return .map(pairs)
        }
    }
}
