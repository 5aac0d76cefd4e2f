import BasinIO
import BasinNet
import BasinTensor
import Foundation

/// A flag one thread sets and another polls (fits and path evaluations running in the background).
public final class CancellationFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var cancelled = false

    public init() {}

    public func cancel() {
        lock.lock()
        cancelled = true
        lock.unlock()
    }

    public var isCancelled: Bool {
        lock.lock()
        defer { lock.unlock() }
        return cancelled
    }
}

/// How the learning rate changes over a fit.
public enum LearningRateSchedule: String, Sendable, Codable, CaseIterable {
    /// The same rate throughout (the mlp-pair PyTorch reference's setting).
    case constant
    /// Garipov et al.'s: the full rate for the first half, falling linearly to 1% of it between 50% and 90%
    /// of the epochs, then 1%. Steadier for chains and curves with several bends (the default).
    case garipov

    /// The factor on the base rate during `epoch` (1-based) of `epochs`.
    public func factor(epoch: Int, of epochs: Int) -> Float {
        switch self {
        case .constant: return 1
        case .garipov:
            let alpha = Float(epoch - 1) / Float(max(1, epochs))
            if alpha <= 0.5 { return 1 }
            if alpha <= 0.9 { return 1 - (alpha - 0.5) / 0.4 * 0.99 }
            return 0.01
        }
    }
}

/// Settings of a curve fit (Garipov et al. 2018).
public struct CurveFitConfig: Sendable {
    public var type: PathType = .bezier
    public var bends: Int = 1
    public var optimizer: OptimizerKind = .adam
    public var learningRate: Float = 1e-2
    public var schedule: LearningRateSchedule = .garipov
    public var momentum: Float = 0.9
    /// L2 penalty on the bends (added to their gradient as weight decay).
    public var l2: Float = 0
    public var epochs: Int = 30
    public var batchSize: Int = 64
    public var seed: UInt64 = 0

    public init() {}

    public init(type: PathType, bends: Int = 1, epochs: Int = 30, learningRate: Float = 1e-2, batchSize: Int = 64, seed: UInt64 = 0,
                schedule: LearningRateSchedule = .garipov) {
        self.type = type
        self.schedule = schedule
        self.bends = bends
        self.epochs = epochs
        self.learningRate = learningRate
        self.batchSize = batchSize
        self.seed = seed
    }
}

/// Progress of a fit, reported after every minibatch (`endOfEpoch` false) and every epoch (true).
public struct CurveFitProgress: Sendable {
    public var epoch: Int
    public var epochs: Int
    /// Minibatches done in this epoch, and per epoch.
    public var batch: Int
    public var batches: Int
    /// Mean training loss over this epoch's minibatches so far (each at its own t).
    public var meanLoss: Double
    public var endOfEpoch: Bool

    /// Fraction of the whole fit done.
    public var fraction: Double {
        (Double(epoch - 1) + Double(batch) / Double(max(1, batches))) / Double(max(1, epochs))
    }
}

public struct CurveFitResult: Sendable {
    /// The path with its trained bends.
    public var path: ModelPath
    /// Mean training loss of each completed epoch.
    public var epochLosses: [Double]
    /// True when stopped by the cancellation flag (the path holds the bends as they were then).
    public var cancelled: Bool
}

/// Trains the bends of a polychain or Bezier path so that E_{t ~ U(0,1)} L(phi_theta(t)) is small,
/// with the endpoints fixed: for every minibatch, a fresh t, the loss at phi_theta(t), back-propagation to
/// the weights, and for bend j the gradient c_j(t) dL/dw (its chain / Bernstein weight at t times the
/// gradient with respect to the weights). Seeded: the same settings give the same bends.
public struct CurveFitter: Sendable {
    public let network: Network
    public let data: Dataset
    public let config: CurveFitConfig
    public private(set) var path: ModelPath

    /// Starts from bends on the segment between `start` and `end` (see `ModelPath.initialised`).
    public init(network: Network, start: ParameterSet, end: ParameterSet, data: Dataset, config: CurveFitConfig) throws {
        guard config.type != .linear else { throw NetworkError("a linear path has no bends to fit; use --type bezier or polychain") }
        try self.init(network: network, path: .initialised(config.type, from: start, to: end, bends: config.bends), data: data, config: config)
    }

    /// Starts from the bends of `path` (e.g. loaded from a file).
    public init(network: Network, path: ModelPath, data: Dataset, config: CurveFitConfig) throws {
        guard path.type != .linear, !path.bendIndices.isEmpty else { throw NetworkError("a linear path has no bends to fit") }
        guard data.count > 0 else { throw NetworkError("data set '\(data.name)' is empty") }
        self.network = network
        self.path = path
        self.data = data
        self.config = config
    }

    /// The loss at phi(t) on a batch and the gradient with respect to every bend: c_j(t) dL/dw.
    public static func lossAndBendGradients(network: Network, path: ModelPath, t: Double, x: Tensor,
                                            y: ArraySlice<Int32>) -> (loss: Double, gradients: [ParameterSet]) {
        let c = path.weights(at: t)
        let (m, g) = network.lossAndGradients(path.parameters(at: t), x: x, y: y)
        let grads = path.bendIndices.map { j in
            path.start.mapTensors { name, tensor in
                (g[name] ?? Tensor.zeros(like: tensor)).scaled(by: Float(c[j]))
            }
        }
        return (m.loss, grads)
    }

    /// Runs the fit. `progress` is called on the calling thread after every minibatch and epoch, `epochEnd`
    /// with the epoch number and the path as it is then (to show the curve improving); `cancel` is checked
    /// between minibatches.
    public func fit(cancel: CancellationFlag? = nil, progress: (CurveFitProgress) -> Void = { _ in },
                    epochEnd: (Int, ModelPath) -> Void = { _, _ in }) -> CurveFitResult {
        var generator = SeededGenerator(seed: config.seed)
        var optimizer = config.optimizer.make(learningRate: config.learningRate, momentum: config.momentum, weightDecay: config.l2)
        var path = self.path
        let names = path.start.names
        let bendRange = path.bendIndices
        // Flat list of trainable tensors: bend-major, then name order.
        var tensors = bendRange.flatMap { j in names.map { path.controlPoints[j][$0]! } }
        let x = data.x
        let batchSize = max(1, config.batchSize)
        let batches = (data.count + batchSize - 1) / batchSize
        var epochLosses: [Double] = []
        for epoch in 1...max(1, config.epochs) {
            let order = generator.permutation(data.count)
            let rate = config.learningRate * config.schedule.factor(epoch: epoch, of: config.epochs)
            optimizer.learningRate = rate
            var lossSum = 0.0
            for b in 0..<batches {
                if cancel?.isCancelled == true {
                    return CurveFitResult(path: path, epochLosses: epochLosses, cancelled: true)
                }
                let t = generator.nextUnit()
                let idx = Array(order[(b * batchSize)..<min(data.count, (b + 1) * batchSize)])
                let (loss, grads) = CurveFitter.lossAndBendGradients(network: network, path: path, t: t,
                                                                    x: x.gatherRows(idx), y: data.labels(at: idx))
                lossSum += loss
                let flatGrads = grads.flatMap { g in names.map { g[$0]! } }
                optimizer.step(&tensors, gradients: flatGrads)
                path.setBends((0..<bendRange.count).map { jj in
                    ParameterSet(names.enumerated().map { ($0.element, tensors[jj * names.count + $0.offset]) })
                })
                progress(CurveFitProgress(epoch: epoch, epochs: config.epochs, batch: b + 1, batches: batches,
                                          meanLoss: lossSum / Double(b + 1), endOfEpoch: false))
            }
            epochLosses.append(lossSum / Double(batches))
            progress(CurveFitProgress(epoch: epoch, epochs: config.epochs, batch: batches, batches: batches,
                                      meanLoss: lossSum / Double(batches), endOfEpoch: true))
            epochEnd(epoch, path)
        }
        return CurveFitResult(path: path, epochLosses: epochLosses, cancelled: false)
    }
}
