import Foundation

/// A problem with an architecture, its parameters or the data fed to it. Like `BasinIOError`: a matchable
/// `kind` plus the context that locates the problem (file, node, tensor, key), and a message naming them.
public struct NetworkError: Error, CustomStringConvertible, LocalizedError, Equatable, Sendable {
    public enum Kind: String, Sendable {
        /// A tensor the graph needs is not in the model.
        case missingTensor
        /// A tensor's shape does not fit its op or its neighbours (or the data's shape does not fit the graph).
        case badShape
        /// The graph itself is malformed: inputs that are not earlier nodes, wrong input counts, no nodes.
        case badGraph
        /// An architecture file names an op Basin does not know.
        case unknownOp
        /// An op's attribute in an architecture file is missing, of the wrong type, unknown, or out of range.
        case badAttribute
        /// An architecture file cannot be read or is not valid JSON of the right form.
        case badFile
        /// A tensor name set that is not a plain chain of linear layers was given without an architecture.
        case notAChain
        /// A data set does not fit the model (features, labels).
        case dataMismatch
        /// Two models that should share names and shapes do not.
        case incompatibleModels
        /// A parameter of the right name has an unusable dtype.
        case badDType
        /// What an architecture asks for (its parameters, a batch's activations) needs more memory than the
        /// machine has, or a size computed from it overflows a 64-bit count. Found before anything is allocated.
        case insufficientMemory
        /// Anything else: an argument out of range for the operation asked.
        case invalidArgument
    }

    public let kind: Kind
    public var file: String?
    public var node: String?
    public var tensor: String?
    /// The attribute or JSON key concerned, if any.
    public var key: String?
    public let problem: String

    public init(_ kind: Kind, file: String? = nil, node: String? = nil, tensor: String? = nil, key: String? = nil,
                _ problem: String) {
        self.kind = kind
        self.file = file
        self.node = node
        self.tensor = tensor
        self.key = key
        self.problem = problem
    }

    /// For callers outside BasinNet that have only a message (kind `.invalidArgument`).
    public init(_ message: String) {
        self.init(.invalidArgument, message)
    }

    /// The same error with context filled in where it is still missing.
    public func with(file: String? = nil, node: String? = nil) -> NetworkError {
        var e = self
        if e.file == nil { e.file = file }
        if e.node == nil { e.node = node }
        return e
    }

    public var description: String {
        var parts: [String] = []
        if let file { parts.append(file) }
        if let node { parts.append("node '\(node)'") }
        if let tensor { parts.append("tensor '\(tensor)'") }
        if let key { parts.append("\"\(key)\"") }
        parts.append(problem)
        return parts.joined(separator: ": ")
    }

    public var errorDescription: String? { description }
}
