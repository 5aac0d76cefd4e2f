import BasinTensor

/// The shape of one sample (without the batch axis): [C, H, W] for images, [L] for token ids, [L, D] for a
/// sequence of vectors, [F] for features. A nil entry is a dimension not known until data arrives.
public typealias SampleShape = [Int?]

/// Whether a tensor an op binds is trained or is state the forward pass maintains.
public enum ParameterKind: String, Sendable, Codable {
    /// Trained by gradient descent (weights, biases, norm scales).
    case trained
    /// Not trained: state a train-mode forward updates (BatchNorm's running statistics and batch counter).
    case buffer
}

/// One channel set named locally within a node ("in", "out", "c"), as seen on one tensor axis.
public struct ChannelRef: Sendable, Equatable, Codable {
    public var label: String
    /// Each unit of the set spans `block` consecutive entries of the axis: H*W after flattening [C, H, W],
    /// the head dimension for attention heads. 1 otherwise.
    public var block: Int

    public init(_ label: String, block: Int = 1) {
        self.label = label
        self.block = block
    }
}

/// A channel set on one axis of an op's per-sample input or output.
public struct AxisChannel: Sendable, Equatable {
    public var axis: Int
    public var channel: ChannelRef

    public init(axis: Int, _ channel: ChannelRef) {
        self.axis = axis
        self.channel = channel
    }
}

/// How an op's channel sets meet its inputs and output: what permutation groups are derived from.
///
/// A label appearing on an input and on the output passes through the op (BatchNorm, pooling); a label on
/// the output (and the op's parameters) only is a set the op opens (a linear or conv output axis); a label
/// on an input only is a set the op closes (a linear or conv input axis). The same label on several inputs
/// merges their sets.
public enum ChannelFlow: Sendable, Equatable {
    /// Every axis of every input carries the same sets as that axis of the output (activations, dropout,
    /// identity, residual add: several inputs merge).
    case elementwise
    /// Explicit axes: `inputs[i]` for input i (nil: no channel axis), `output` for the output.
    case axes(inputs: [AxisChannel?], output: AxisChannel?)
    /// The op mixes positions so that no permutation passes through it (a general reshape): sets end here.
    case opaque
}

/// One tensor an op binds by name (a state_dict key).
public struct ParameterSlot: Sendable, Equatable {
    /// The op's name for it: "weight", "bias", "running_mean", ...
    public var role: String
    /// The tensor's name in the model file.
    public var name: String
    public var kind: ParameterKind
    /// Integer-valued (int64 in PyTorch files, e.g. num_batches_tracked); held as Float32 in a ParameterSet
    /// and written back in the file's dtype.
    public var integer: Bool
    /// For each axis, the channel set it indexes (nil: never permuted, e.g. kernel taps).
    public var channels: [ChannelRef?]

    public init(_ role: String, _ name: String, kind: ParameterKind = .trained, integer: Bool = false, channels: [ChannelRef?]) {
        self.role = role
        self.name = name
        self.kind = kind
        self.integer = integer
        self.channels = channels
    }
}

/// Train mode: batch statistics, buffer updates, dropout; eval mode: running statistics, no state changes.
public enum ForwardMode: String, Sendable {
    case eval, train
}

/// What an op's forward can see and report, built by the interpreter for each node.
public struct ForwardContext {
    public let mode: ForwardMode
    public let params: ParameterSet
    /// Train mode only: running statistics become the plain average over the batches seen (PyTorch's
    /// momentum None), as a BatchNorm reset needs.
    public let cumulativeStatistics: Bool
    /// Fused mode (path evaluation): an op may apply its bias and `epilogue` after its product in one pass.
    public let fused: Bool
    /// An elementwise op that is this node's only reader. An op that applies it to its output in the same
    /// pass sets it to nil; otherwise the interpreter applies it after the forward.
    public var epilogue: (any ElementwiseOp)?
    /// Whatever backward needs beyond the inputs and output (set only when `recordForBackward`).
    public var saved: (any Sendable)?
    public let recordForBackward: Bool
    /// A seed for ops that draw random numbers in train mode (dropout), distinct per node and step.
    public let seed: UInt64
    /// New values of buffers (train mode).
    public var bufferUpdates: [(String, Tensor)] = []

    public init(mode: ForwardMode, params: ParameterSet, cumulativeStatistics: Bool = false, fused: Bool = false,
                epilogue: (any ElementwiseOp)? = nil, recordForBackward: Bool = false, seed: UInt64 = 0) {
        self.mode = mode
        self.params = params
        self.cumulativeStatistics = cumulativeStatistics
        self.fused = fused
        self.epilogue = epilogue
        self.recordForBackward = recordForBackward
        self.seed = seed
    }

    /// A tensor the graph was validated to have.
    public func parameter(_ name: String) -> Tensor {
        guard let t = params[name] else { preconditionFailure("tensor '\(name)' is missing (the graph was not validated)") }
        return t
    }
}

/// An op's inputs (each with the batch axis first). `take` moves an input out: when the interpreter no
/// longer needs it, the op then holds the only reference and can write its output into it in place.
public struct OpInputs {
    var tensors: [Tensor]

    public init(_ tensors: [Tensor]) { self.tensors = tensors }

    public var count: Int { tensors.count }
    public subscript(_ i: Int) -> Tensor { tensors[i] }

    public mutating func take(_ i: Int) -> Tensor {
        var t = Tensor.zeros([0])
        swap(&t, &tensors[i])
        return t
    }
}

/// What an op's backward receives and fills in.
public struct BackwardContext {
    public let inputs: [Tensor]
    public let output: Tensor
    /// d loss / d output.
    public let outputGradient: Tensor
    public let saved: (any Sendable)?
    public let params: ParameterSet
    public let mode: ForwardMode
    /// Whether input i needs a gradient (the network input does not).
    public let wantsInputGradient: [Bool]
    /// d loss / d input i (nil: none).
    public var inputGradients: [Tensor?]
    /// d loss / d parameter, by tensor name.
    public var parameterGradients: [(String, Tensor)] = []

    public init(inputs: [Tensor], output: Tensor, outputGradient: Tensor, saved: (any Sendable)?, params: ParameterSet,
                mode: ForwardMode, wantsInputGradient: [Bool]) {
        self.inputs = inputs
        self.output = output
        self.outputGradient = outputGradient
        self.saved = saved
        self.params = params
        self.mode = mode
        self.wantsInputGradient = wantsInputGradient
        self.inputGradients = Array(repeating: nil, count: inputs.count)
    }

    public func parameter(_ name: String) -> Tensor {
        guard let t = params[name] else { preconditionFailure("tensor '\(name)' is missing (the graph was not validated)") }
        return t
    }
}

/// One kind of operation of an architecture graph, defined in one place (one file under Ops/): how it
/// is read from and written to the architecture file, the tensors it binds, shape inference, channel
/// flow, initialisation, forward and backward. `OpRegistry.types` lists every op type once.
public protocol Op: Sendable, Equatable, CustomStringConvertible {
    /// The names this op type has in an architecture file's `"op"` field (lower case).
    static var typeNames: [String] { get }
    /// Reads the op from a node's attributes (every key besides name, op, input and inputs). `typeName` is
    /// the entry's op name, lowercased. Unread keys are an error reported by the caller.
    static func read(_ attributes: inout NodeAttributes, typeName: String) throws -> Self
    /// The op's name as written to an architecture file.
    var typeName: String { get }
    /// Writes the attributes `read` reads.
    func write(to attributes: inout [String: JSONValue])

    /// Number of inputs.
    var inputCount: Int { get }
    /// Tensors bound by name: trained parameters and buffers.
    var parameters: [ParameterSlot] { get }
    /// The per-sample output shape (nil: unknown) for per-sample input shapes (nil: unknown), checking the
    /// bound tensors' shapes (`shapeOf`: a tensor's shape, nil when absent). Throws `NetworkError` with the
    /// tensor concerned; the caller adds node and file.
    func outputShape(_ inputs: [SampleShape?], shapeOf: (String) -> [Int]?) throws -> SampleShape?
    /// The input shape this op implies when it reads the network input and nothing declares one (a linear
    /// layer: [in]). Default nil.
    func inputShapeHint(shapeOf: (String) -> [Int]?) -> SampleShape?
    /// How channel sets flow through the op, for inputs of these shapes.
    func channelFlow(_ inputs: [SampleShape?]) -> ChannelFlow

    /// PyTorch's default initialisation of the op's parameters and buffers for inputs of these shapes.
    /// Default: none (ops without tensors).
    func initialParameters(_ inputs: [SampleShape?], generator: inout SeededGenerator) throws -> [(String, Tensor)]
    /// The shapes `initialParameters` gives for inputs of these shapes, without allocating anything, with the
    /// same errors: the memory plan (`Architecture.plan`) reads them before any tensor exists, so an op whose
    /// attributes are each in range but whose product is enormous is refused instead of trapping in the
    /// allocation. Every op that implements `initialParameters` implements this too. Default: none.
    func initialParameterShapes(_ inputs: [SampleShape?]) throws -> [(String, [Int])]

    /// y(x; sum_i c_i P_i) = sum_i c_i y(x; P_i) for every input x: path evaluation may then compute the
    /// output once per control point and combine. Default false.
    var isLinearInParameters: Bool { get }
    /// A pure change of layout (flatten, reshape, identity, dropout at eval): no arithmetic. Default false.
    var isLayoutOnly: Bool { get }

    /// The output for a batch (batch axis first).
    func forward(_ inputs: inout OpInputs, _ context: inout ForwardContext) -> Tensor
    /// Gradients for the inputs that want one and for every parameter, from the forward's inputs, output
    /// and saved state.
    func backward(_ context: inout BackwardContext)
}

/// An op applied value by value, which may be fused into the op before it (applied in the same pass).
public protocol ElementwiseOp: Op {
    func apply(_ values: UnsafeMutableBufferPointer<Float>)
}

extension Op {
    public var inputCount: Int { 1 }
    public var parameters: [ParameterSlot] { [] }
    public func inputShapeHint(shapeOf: (String) -> [Int]?) -> SampleShape? { nil }
    public func channelFlow(_ inputs: [SampleShape?]) -> ChannelFlow { .elementwise }
    public func initialParameters(_ inputs: [SampleShape?], generator: inout SeededGenerator) throws -> [(String, Tensor)] { [] }
    public func initialParameterShapes(_ inputs: [SampleShape?]) throws -> [(String, [Int])] { [] }
    public var isLinearInParameters: Bool { false }
    public var isLayoutOnly: Bool { false }
    public func write(to attributes: inout [String: JSONValue]) {}
    public var typeName: String { Self.typeNames[0] }
    public var description: String { typeName }
    /// Same as `typeName` (older name).
    public var kindName: String { typeName }

    /// Names of the bound tensors, in slot order.
    public var parameterNames: [String] { parameters.map(\.name) }

    public func isEqual(to other: any Op) -> Bool {
        guard let o = other as? Self else { return false }
        return o == self
    }

    /// Applies an elementwise op in place over a whole tensor.
    static func applyInPlace(_ op: any ElementwiseOp, _ y: inout Tensor) {
        y.withUnsafeMutableBufferPointer { op.apply($0) }
    }
}

extension ElementwiseOp {
    public func forward(_ inputs: inout OpInputs, _ context: inout ForwardContext) -> Tensor {
        var y = inputs.take(0)
        y.withUnsafeMutableBufferPointer { apply($0) }
        return y
    }
}

/// Shape helpers shared by ops.
public enum Shapes {
    /// "[1, 8, 8]" with "?" for unknown dimensions.
    public static func describe(_ s: SampleShape?) -> String {
        guard let s else { return "unknown" }
        return "[" + s.map { $0.map(String.init) ?? "?" }.joined(separator: ", ") + "]"
    }

    /// The product of the dimensions when all are known (nil also when the product overflows Int: use
    /// `checkedCount` where that must be an error).
    public static func count(_ s: SampleShape) -> Int? {
        var n = 1
        for d in s {
            guard let d else { return nil }
            let (p, overflow) = n.multipliedReportingOverflow(by: d)
            if overflow { return nil }
            n = p
        }
        return n
    }

    /// The product of the dimensions when all are known (nil otherwise); a product beyond Int is an
    /// `insufficientMemory` error naming the shape (`what`: the tensor or activation it describes).
    public static func checkedCount(_ s: SampleShape, what: String) throws -> Int? {
        guard let known = known(s) else { return nil }
        return try checkedCount(known, what: what)
    }

    public static func checkedCount(_ s: [Int], what: String) throws -> Int {
        var n = 1
        for d in s {
            let (p, overflow) = n.multipliedReportingOverflow(by: d)
            guard !overflow, d >= 0 else {
                throw NetworkError(.insufficientMemory, "\(what) of shape \(describe(s)) holds more values than a 64-bit count (far beyond any machine's memory)")
            }
            n = p
        }
        return n
    }

    /// The dimensions when all are known.
    public static func known(_ s: SampleShape?) -> [Int]? {
        guard let s else { return nil }
        var out: [Int] = []
        for d in s {
            guard let d else { return nil }
            out.append(d)
        }
        return out
    }
}
