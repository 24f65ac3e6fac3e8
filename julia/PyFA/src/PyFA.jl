"""
    PyFA

Feedback Alignment (FA) for Flux: [`DenseFA`](@ref), a dense layer whose backward pass sends the
error to its input through a fixed feedback matrix `B` instead of the forward weights `W`, and
[`fa_matmul`](@ref), the matrix product carrying that rule.

For `y = σ.(W * x .+ b)` with upstream cotangent `δ = ∂L/∂(W*x .+ b)`:

    ∂L/∂W = δ xᵀ        ∂L/∂b = Σ_batch δ        (true gradients)
    ∂L/∂x := Bᵀ δ                                (FA; backprop would use Wᵀ δ)

`B` has the shape of `W`, gets no gradient, and is never touched by an optimiser.
"""
module PyFA

using ChainRulesCore: ChainRulesCore, NoTangent, ProjectTo, @thunk, unthunk
using Flux: Flux
using Random: Random, AbstractRNG, randn!

export DenseFA, fa_matmul, feedback_matrix

"""Layer modes, shared by name with the Python side (`pyfa.network.MODES`)."""
const FA_MODES = (:fa, :bp, :usf, :brsf, :frsf)

"""
    fa_matmul(weight, x, feedback) = weight * x

The forward pass is the ordinary product. Its `rrule` gives the true `∂weight = ȳ xᵀ` but sends
`∂x = feedbackᵀ ȳ` to the input, and no tangent to `feedback`. Arguments are typed as the rule is,
so no call can reach the plain product without also matching the rule.
"""
fa_matmul(weight::AbstractMatrix, x::AbstractVecOrMat, feedback::AbstractMatrix) = weight * x

function ChainRulesCore.rrule(::typeof(fa_matmul), weight::AbstractMatrix,
                              x::AbstractVecOrMat, feedback::AbstractMatrix)
    y = weight * x
    project_weight = ProjectTo(weight)
    project_x = ProjectTo(x)
    function fa_matmul_pullback(ȳ)
        δ = unthunk(ȳ)
        ∂weight = @thunk project_weight(δ * x')
        ∂x = @thunk project_x(feedback' * δ)  # FA: feedbackᵀ δ, where backprop has weightᵀ δ
        return (NoTangent(), ∂weight, ∂x, NoTangent())
    end
    return y, fa_matmul_pullback
end

"""
    feedback_matrix(mode, weight, feedback) -> B

The matrix, shaped like `weight`, through which a layer sends its error to its input.
With `s = sqrt(2 / (in + out))` (the Glorot standard deviation, fixed by the shape):

- `:fa`   — `B = feedback` (fixed random)
- `:bp`   — `B = weight` (exact backprop)
- `:usf`  — `B = sign.(weight) .* s`
- `:frsf` — `B = abs.(feedback) .* sign.(weight)` (`feedback` holds the fixed `R`)
- `:brsf` — `B = abs.(R) .* sign.(weight)`, `R ~ N(0, s²)` drawn afresh on every call

It is marked non-differentiable: no gradient reaches `weight` through `B`, in any mode.
"""
function feedback_matrix(mode::Symbol, weight::AbstractMatrix, feedback::AbstractMatrix)
    mode === :fa && return feedback
    mode === :bp && return weight
    mode === :frsf && return abs.(feedback) .* sign.(weight)
    s = convert(eltype(weight), sqrt(2 / (size(weight, 1) + size(weight, 2))))
    mode === :usf && return sign.(weight) .* s
    mode === :brsf && return abs.(randn!(similar(weight))) .* s .* sign.(weight)
    throw(ArgumentError("unknown FA mode :$mode; expected one of $FA_MODES"))
end
feedback_matrix(mode::AbstractString, weight, feedback) = feedback_matrix(Symbol(mode), weight, feedback)

ChainRulesCore.@non_differentiable feedback_matrix(::Any, ::Any, ::Any)

"""
    DenseFA(in => out, σ=identity; bias=true, init=Flux.glorot_uniform, mode=:fa, rng=Random.default_rng())
    DenseFA(weight::AbstractMatrix, feedback::AbstractMatrix, [bias, σ, mode])

A fully connected layer trained by Feedback Alignment. The forward pass is Flux's `Dense`:

    y = σ.(weight * x .+ bias)

for `x` a vector of length `in` or an `in × batch` matrix (or any array with `size(x, 1) == in`).
In the backward pass `weight` and `bias` get their true gradients, but the error reaching `x` is
`Bᵀ δ` with `B = feedback_matrix(mode, weight, feedback)`; see [`feedback_matrix`](@ref) for the
modes `:fa` (default), `:bp`, `:usf`, `:frsf`, `:brsf`.

Fields, in order: `weight` and `feedback` (both `out × in`), `bias` (a vector, or `false`), `σ`, and
`mode::Symbol`. `feedback` is an ordinary field, so `gpu`, `cpu`, `f32`, `f64` and `fmap` move and
convert it with the weights; it is not trainable (`Flux.trainable` gives `weight` and `bias`), so
`Flux.setup`/`Flux.update!` never change it. `init(rng, out, in)` draws `weight` and, independently,
`feedback`.

Only Zygote (Flux's default AD) applies the FA rule; other AD back-ends would need it imported.

GPU: nothing in the layer is CUDA-specific. With CUDA.jl and cuDNN.jl in the environment,
`using CUDA, cuDNN` then `model = gpu(model)` moves weights and feedback to the GPU, and the same
rule runs on `CuArray`s (check `CUDA.functional()` at run time).

# Examples
```julia
using PyFA, Flux
layer = DenseFA(5 => 2, tanh)                 # 5 inputs, 2 outputs, mode :fa
size(layer(rand32(5, 64)))                    # (2, 64)

model = Chain(DenseFA(5 => 8, relu), DenseFA(8 => 1; mode = :usf))
x, y = rand32(5, 16), rand32(1, 16)
grads = Flux.gradient(m -> Flux.mse(m(x), y), model)[1]
grads.layers[1].feedback === nothing          # true: feedback gets no gradient

opt = Flux.setup(Adam(1e-3), model)           # state for weight and bias only
Flux.update!(opt, model, grads)
```
"""
struct DenseFA{F, M<:AbstractMatrix, N<:AbstractMatrix, B}
    weight::M
    feedback::N
    bias::B
    σ::F
    mode::Symbol
    function DenseFA(weight::M, feedback::N, bias = true, σ::F = identity,
                     mode::Symbol = :fa) where {M<:AbstractMatrix, N<:AbstractMatrix, F}
        size(feedback) == size(weight) || throw(DimensionMismatch(string(
            "DenseFA: feedback must have the weight's shape (out, in) = ", size(weight),
            ", got ", size(feedback))))
        mode in FA_MODES || throw(ArgumentError("DenseFA: unknown mode :$mode; expected one of $FA_MODES"))
        b = Flux.create_bias(weight, bias, size(weight, 1))
        return new{F, M, N, typeof(b)}(weight, feedback, b, σ, mode)
    end
end

DenseFA(weight::AbstractMatrix, feedback::AbstractMatrix, bias, σ, mode::AbstractString) =
    DenseFA(weight, feedback, bias, σ, Symbol(mode))

function DenseFA((in, out)::Pair{<:Integer, <:Integer}, σ = identity;
                 bias = true, init = Flux.glorot_uniform, mode = :fa,
                 rng::AbstractRNG = Random.default_rng())
    return DenseFA(init(rng, out, in), init(rng, out, in), bias, σ, Symbol(mode))
end

Flux.@layer DenseFA trainable=(weight, bias)

function (a::DenseFA)(x::AbstractVecOrMat)
    _check_input(a, x)
    B = feedback_matrix(a.mode, a.weight, a.feedback)
    return a.σ.(fa_matmul(a.weight, x, B) .+ a.bias)
end

function (a::DenseFA)(x::AbstractArray)
    _check_input(a, x)
    return reshape(a(reshape(x, size(x, 1), :)), :, size(x)[2:end]...)
end

function _check_input(a::DenseFA, x::AbstractArray)
    n = size(a.weight, 2)
    ndims(x) >= 1 && size(x, 1) == n && return nothing
    throw(DimensionMismatch(string(
        "DenseFA(", n, " => ", size(a.weight, 1), ") expects an input with size(x, 1) == ", n,
        " (features × batch), got ", summary(x))))
end
ChainRulesCore.@non_differentiable _check_input(::Any, ::Any)

function Base.show(io::IO, l::DenseFA)
    print(io, "DenseFA(", size(l.weight, 2), " => ", size(l.weight, 1))
    l.σ === identity || print(io, ", ", l.σ)
    keywords = String[]
    l.bias === false && push!(keywords, "bias=false")
    l.mode === :fa || push!(keywords, "mode=:" * string(l.mode))
    isempty(keywords) || print(io, "; ", join(keywords, ", "))
    print(io, ")")
end

end # module PyFA
