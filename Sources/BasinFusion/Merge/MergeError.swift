import Foundation

/// A merge problem, in BasinIOError's style: a matchable `kind` plus the file, recipe key path and tensor it
/// concerns, and a sentence saying what is wrong.
public struct MergeError: Error, CustomStringConvertible, LocalizedError, Equatable, Sendable {
    public enum Kind: String, Sendable {
        /// The recipe is not YAML, or is bigger or more deeply aliased than a recipe can be.
        case malformedRecipe
        /// A key Basin does not know (or that the method does not read).
        case unknownKey
        /// A key or method mergekit has that Basin does not implement (`tokenizer_source: union`, LoRA, ...).
        case unsupported
        /// A value of the wrong type, out of range or not finite.
        case invalidValue
        /// A required key or parameter is missing.
        case missingValue
        /// A recipe that would do nothing (a filter matching no tensor, all weights zero, ...).
        case noEffect
        /// A model named by the recipe cannot be found or opened.
        case missingModel
        /// Models disagree: a tensor missing from one, shapes or kinds that differ, layer ranges of different length.
        case incompatibleModels
        /// A method cannot run on these inputs (wrong number of models, no base, zero weight sum, ...).
        case methodFailed
        /// Inputs hold NaN or infinite values.
        case nonFinite
        /// The output cannot be written (no space, a clash with an input, ...).
        case output
        /// An external evaluator failed or printed something other than one JSON object of metrics.
        case evaluatorFailed
        /// Anything else (e.g. a soup of no ingredients).
        case invalidRequest
    }

    public let kind: Kind
    public let file: String?
    /// Where in the recipe, as a path like `models[1].parameters.weight`.
    public let key: String?
    public let tensor: String?
    public let problem: String

    public init(_ kind: Kind, file: String? = nil, key: String? = nil, tensor: String? = nil, _ problem: String) {
        self.kind = kind
        self.file = file
        self.key = key
        self.tensor = tensor
        self.problem = problem
    }

    /// A plain message (kind `invalidRequest`), for callers outside the recipe machinery.
    public init(_ problem: String) {
        self.init(.invalidRequest, problem)
    }

    public var description: String {
        var parts: [String] = []
        if let file { parts.append(file) }
        if let key { parts.append(key) }
        if let tensor { parts.append("tensor '\(tensor)'") }
        parts.append(problem)
        return parts.joined(separator: ": ")
    }

    public var errorDescription: String? { description }

    /// The same error with the file filled in (when it had none).
    func inFile(_ path: String) -> MergeError {
        file == nil ? MergeError(kind, file: path, key: key, tensor: tensor, problem) : self
    }
}
