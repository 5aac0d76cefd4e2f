import BasinIO
import BasinTensor
import Foundation

/// Minibatch training of a network on a data set: seeded, so the same settings give the same bits.
public struct TrainingConfig: Sendable {
    public var optimizer: OptimizerKind = .adam
    public var learningRate: Float = 1e-3
    public var momentum: Float = 0.9
    public var weightDecay: Float = 0
    public var epochs: Int = 10
    public var batchSize: Int = 64
    public var seed: UInt64 = 0

    public init() {}
}

public struct EpochReport: Sendable {
    public var epoch: Int
    public var meanLoss: Double
    public var accuracy: Double
}

public enum Trainer {
    /// PyTorch's default nn.Linear initialisation: weight and bias uniform in +-1/sqrt(fan_in).
    public static func initialise(_ architecture: Architecture, sizes: [Int], generator: inout SeededGenerator) -> ParameterSet {
        var params = ParameterSet()
        for (i, node) in architecture.linearNodes.enumerated() {
            guard case let .linear(w, b) = architecture.nodes[node].op else { continue }
            let fanIn = sizes[i], fanOut = sizes[i + 1]
            let bound = 1 / Float(fanIn).squareRoot()
            params[w] = Tensor(shape: [fanOut, fanIn], storage: (0..<(fanIn * fanOut)).map { _ in generator.uniform(-bound, bound) })
            if let b { params[b] = Tensor(shape: [fanOut], storage: (0..<fanOut).map { _ in generator.uniform(-bound, bound) }) }
        }
        return params
    }

    /// Trains `params` in place; calls `progress` after each epoch and `checkpoint` with the epoch number
    /// and the parameters after it.
    public static func train(network: Network, params: inout ParameterSet, data: Dataset, config: TrainingConfig,
                             progress: (EpochReport) -> Void = { _ in },
                             checkpoint: (Int, ParameterSet) throws -> Void = { _, _ in }) rethrows {
        var generator = SeededGenerator(seed: config.seed)
        var optimizer = config.optimizer.make(learningRate: config.learningRate, momentum: config.momentum, weightDecay: config.weightDecay)
        let names = params.names
        let x = data.x.reshaped([data.count, data.x.columns])
        for epoch in 1...max(1, config.epochs) {
            let order = generator.permutation(data.count)
            var lossSum = 0.0, correct = 0.0
            var start = 0
            while start < data.count {
                let idx = Array(order[start..<min(data.count, start + config.batchSize)])
                let xb = x.gatherRows(idx)
                let yb = idx.map { data.y[$0] }
                let (m, g) = network.lossAndGradients(params, x: xb, y: yb[...])
                lossSum += m.loss * Double(idx.count)
                correct += m.accuracy * Double(idx.count)
                var tensors = names.map { params[$0]! }
                optimizer.step(&tensors, gradients: names.map { g[$0] ?? Tensor.zeros(like: params[$0]!) })
                for (n, t) in zip(names, tensors) { params[n] = t }
                start += config.batchSize
            }
            progress(EpochReport(epoch: epoch, meanLoss: lossSum / Double(data.count), accuracy: correct / Double(data.count)))
            try checkpoint(epoch, params)
        }
    }
}
