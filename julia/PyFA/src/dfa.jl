# Direct feedback alignment (Nøkland 2016): a chain whose hidden layers hear the network's output
# error directly, each through its own fixed matrix. Three rules carry it, and nothing else: no
# hooks, no global state; one ordinary backward pass takes the output error to every layer.

"""
    dfa_matmul(weight, x) = weight * x

A dense layer's product inside a [`DFAChain`](@ref), above its first layer. Its `rrule` gives the
true `∂weight = ȳ xᵀ` and sends nothing to `x`: under DFA no error travels from layer to layer,
each hidden layer hears the network's output error directly, through [`dfa_output`](@ref).
"""
dfa_matmul(weight::AbstractMatrix, x::AbstractVecOrMat) = weight * x

function ChainRulesCore.rrule(::typeof(dfa_matmul), weight::AbstractMatrix, x::AbstractVecOrMat)
    y = weight * x
    project_weight = ProjectTo(weight)
    function dfa_matmul_pullback(ȳ)
        δ = unthunk(ȳ)
        return (NoTangent(), @thunk(project_weight(δ * x')), NoTangent())  # nothing reaches x
    end
    return y, dfa_matmul_pullback
end

"""
    dfa_conv(x, weight, cdims::DenseConvDims) = conv(x, weight, cdims)

A conv layer's product inside a [`DFAChain`](@ref), above its first layer: [`dfa_matmul`](@ref)
for a [`ConvFA`](@ref). Its `rrule` gives the true `∂weight = ∇conv_filter(x, ȳ, cdims)` (with
`cdims` as given: `ConvFA` builds it with `flipkernel = true`, cross-correlation) and sends
nothing to `x`, nor to `cdims`.
"""
dfa_conv(x::AbstractArray, weight::AbstractArray, cdims::DenseConvDims) = conv(x, weight, cdims)

function ChainRulesCore.rrule(::typeof(dfa_conv), x::AbstractArray, weight::AbstractArray,
                              cdims::DenseConvDims)
    y = conv(x, weight, cdims)
    project_weight = ProjectTo(weight)
    function dfa_conv_pullback(ȳ)
        δ = _dense(unthunk(ȳ))
        ∂weight = @thunk project_weight(∇conv_filter(x, δ, cdims))
        return (NoTangent(), NoTangent(), ∂weight, NoTangent())  # nothing reaches x
    end
    return y, dfa_conv_pullback
end

"""
    dfa_output(z, direct_feedback, hidden...) = copy(z)

Where the output error enters a [`DFAChain`](@ref). `z` is the top layer's pre-activation
`z_top` (`C × batch` for a `DenseFA`, `(spatial..., channels, batch)` for a `ConvFA`); `hidden`
are the outputs `h₁, h₂, …` of the hidden layers, after their activations, arguments only so
that the backward pass can reach them. With the output error `e = ȳ = ∂L/∂z_top` taken per
sample, `C × batch` (`C` the top layer's outputs per sample, in column-major order), the `rrule`
gives

    ∂z   = ȳ                                the top layer's true gradient goes on down to it
    ∂h_l = reshape(B_lᵀ e, size(h_l))       B_l = the columns of `direct_feedback` for layer l

computing every `B_lᵀ e` in one product, `direct_feedbackᵀ e`, `direct_feedback` being the `B_l`
side by side (`C × Σ units_l`, `units_l` the outputs per sample of hidden layer l, in the
column-major order of `h_l`'s per-sample slice). `direct_feedback` gets no tangent: it is fixed.
The value is a copy of `z`, not `z` itself: a rule's output must not alias its arguments
(Mooncake's `rrule_wrapper` gives the output a tangent of its own, as PyFA's Enzyme rule gives
it a shadow of its own).
"""
function dfa_output(z::AbstractArray, direct_feedback::AbstractMatrix, hidden::AbstractArray...)
    _check_direct_feedback(z, direct_feedback, hidden)
    return copy(z)
end

function ChainRulesCore.rrule(::typeof(dfa_output), z::AbstractArray, direct_feedback::AbstractMatrix,
                              hidden::AbstractArray...)
    _check_direct_feedback(z, direct_feedback, hidden)
    project_z = ProjectTo(z)
    projections = map(ProjectTo, hidden)
    columns = _unit_ranges(0, hidden)
    function dfa_output_pullback(ȳ)
        e = unthunk(ȳ)
        projected = direct_feedback' * _per_sample(e)  # every B_lᵀ e at once, stacked: Σ units × batch
        ∂hidden = map((project, h, r) -> project(reshape(projected[r, :], size(h))),
                      projections, hidden, columns)
        return (NoTangent(), project_z(e), NoTangent(), ∂hidden...)
    end
    return copy(z), dfa_output_pullback
end

"""An array as `units × batch`: a vector is one sample; otherwise the last dimension is the batch."""
_per_sample(a::AbstractVector) = reshape(a, :, 1)
_per_sample(a::AbstractArray) = reshape(a, :, size(a, ndims(a)))

"""The number of outputs per sample of a layer output (a vector is one sample)."""
_units(a::AbstractVector) = length(a)
_units(a::AbstractArray) = prod(Base.front(size(a)))

_batch(a::AbstractVector) = 1
_batch(a::AbstractArray) = size(a, ndims(a))

"""The column ranges of each hidden output in `direct_feedback` (its rows in `direct_feedbackᵀ e`)."""
_unit_ranges(offset::Int, ::Tuple{}) = ()
function _unit_ranges(offset::Int, hidden::Tuple)
    stop = offset + _units(first(hidden))
    return ((offset + 1):stop, _unit_ranges(stop, Base.tail(hidden))...)
end

function _check_direct_feedback(z::AbstractArray, direct_feedback::AbstractMatrix, hidden::Tuple)
    want = (_units(z), sum(_units, hidden; init = 0))
    size(direct_feedback) == want && all(h -> _batch(h) == _batch(z), hidden) && return nothing
    throw(DimensionMismatch(string(
        "dfa_output: direct_feedback must be (C, Σ units_l) = ", want, " for a top layer of C = ",
        want[1], " outputs per sample and hidden outputs of ", map(_units, hidden),
        " units per sample (sizes ", map(size, hidden), ", top ", size(z), "); got ",
        size(direct_feedback), ". A conv layer's units depend on the input size: build the ",
        "DFAChain with the input_size of the data it gets")))
end

"""The layers `DFAChain` differentiates with a rule: their outputs are DFA's hidden layers and top."""
const FALayer = Union{DenseFA, ConvFA}

"""Layers without parameters that `DFAChain` takes between its `DenseFA`/`ConvFA` layers."""
const DFAStructure = Union{Flux.MeanPool, Flux.MaxPool, Flux.AdaptiveMeanPool, Flux.AdaptiveMaxPool,
                           Flux.GlobalMeanPool, Flux.GlobalMaxPool, typeof(Flux.flatten)}

"""
    DFAChain(layers...; input_size=nothing, init=Flux.glorot_uniform, rng=Random.default_rng())
    DFAChain(chain::Flux.Chain; input_size, init, rng)
    DFAChain(layers::Tuple, direct_feedback::AbstractMatrix)

A chain of [`DenseFA`](@ref) and [`ConvFA`](@ref) layers, with pooling (`MeanPool`, `MaxPool`,
their adaptive and global forms) and `Flux.flatten` between them, trained by Direct Feedback
Alignment (Nøkland 2016). The forward pass is the `Chain`'s. The last layer (the top) must be a
`DenseFA` or `ConvFA`. In the backward pass, with `e = ∂L/∂z_top` the top layer's pre-activation
error, per sample (`C × batch`, `C` the top layer's outputs per sample):

    top layer:         δ_top = e                                   (its true gradient)
    hidden layer l:    δ_l   = reshape(B_lᵀ e, size(z_l)) .* σ_l'(z_l)   B_l fixed, C × units_l
    every layer:       ∂W_l, ∂b_l: the true ones for δ_l (∂W_l = δ_l x_lᵀ for a dense layer)
    the input:         ∂L/∂x = the first layer's own FA rule for δ₁ (B₁ᵀ δ₁ for a dense layer),
                       passed back through any pooling or flatten before it

Every `DenseFA` and `ConvFA` below the top is a hidden layer. Its signal arrives right after its
own activation `σ_l`, before any pooling or flatten that follows it (as in pyfa's numpy oracle,
`pyfa.reference.cnn_gradients(...; mode = "dfa")`, and PyTorch's `DFASequential`); put each
layer's activation inside it (`σ`), not in a layer of its own. `units_l` is the number of outputs
per sample of hidden layer l: `out` for a `DenseFA`, `W_out·H_out·out_channels` for a 2-d `ConvFA`
(in column-major order, the order of `vec(h_l[:, :, :, n])`: for data that crossed from numpy as
`x.T`, the C-order flatten of the NCHW output, `(c·H + h)·W + w`). `C` likewise for the top.

`B_l` is shaped "like a weight from units_l to C" (the Python side's `direct_feedback`, with `e`
batch-first: `δ_l = reshape(e B_l) ⊙ σ'`). Nothing travels from layer to layer: the layers above
the first compute their products with [`dfa_matmul`](@ref) and [`dfa_conv`](@ref) (no error to
their input), and the top layer's pre-activation passes through [`dfa_output`](@ref), whose
pullback hands each hidden output its `reshape(B_lᵀ e)`, from where the ordinary backward pass
takes it through the activation into `∂W_l` and `∂b_l`. The first `DenseFA`/`ConvFA` keeps its
own rule, so the network's input gradient is that layer's FA signal (mode `:fa`: through its
`feedback`); the other layers' `feedback` is unused.

Fields: `layers` (a `Tuple`) and `direct_feedback`, the `B_l` of the hidden layers side by side,
bottom first: a `C × Σ units_l` matrix (`C × 0` with no hidden layer: the chain is then ordinary FA).
[`direct_feedback_of`](@ref) gives one `B_l`. `direct_feedback` is an ordinary field (`gpu`, `f64`,
`fmap` move it) and not trainable: `Flux.trainable` gives only `layers`. The first constructor draws
each `B_l` as `init(rng, C, units_l)` (Glorot uniform `U(±√(6/(C + units_l)))` by default: the scale
of an FA feedback matrix for a layer from `units_l` to `C`), bottom first, in the weights' element
type. A chain with `ConvFA` layers needs `input_size`, one sample's size (`(W, H, channels)` for
images): conv outputs depend on it, and so do the shapes of `B_l` (one forward pass on a zero sample
measures them). The shapes are checked at construction where they can be (a dense top, dense hidden
layers) and otherwise on every forward pass, with a `DimensionMismatch` naming them.

Works under Zygote, Enzyme and Mooncake (PyFA's extensions carry the three rules; Mooncake takes
plain `Array`s of Float32 or Float64).

# Examples
```julia
using PyFA, Flux, Random
model = DFAChain(DenseFA(784 => 256, tanh), DenseFA(256 => 256, tanh), DenseFA(256 => 10);
                 rng = Xoshiro(0))
size(direct_feedback_of(model, 2))          # (10, 256): B for the second hidden layer
x, y = rand32(784, 64), Flux.onehotbatch(rand(0:9, 64), 0:9)
grads = Flux.gradient(m -> Flux.logitcrossentropy(m(x), y), model)[1]
grads.direct_feedback === nothing           # fixed

cnn = DFAChain(ConvFA((3, 3), 1 => 4, relu; pad = 1), MeanPool((2, 2)),
               ConvFA((3, 3), 4 => 6, relu; pad = 1), MeanPool((2, 2)), Flux.flatten,
               DenseFA(54 => 10); input_size = (12, 12, 1), rng = Xoshiro(0))
size(direct_feedback_of(cnn, 1; input_size = (12, 12, 1)))   # (10, 12, 12, 4)
size(cnn.direct_feedback)                   # (10, 576 + 216)
```
"""
struct DFAChain{L<:Tuple, M<:AbstractMatrix}
    layers::L
    direct_feedback::M
    function DFAChain(layers::Tuple, direct_feedback::AbstractMatrix)
        _check_dfa_layers(layers, direct_feedback)
        return new{typeof(layers), typeof(direct_feedback)}(layers, direct_feedback)
    end
end

function DFAChain(layers...; input_size = nothing, init = Flux.glorot_uniform,
                  rng::AbstractRNG = Random.default_rng())
    _check_dfa_kinds(layers)
    C, units = _dfa_units(layers, input_size)
    T = eltype(last(layers).weight)
    blocks = [convert(AbstractMatrix{T}, init(rng, C, u)) for u in units]
    direct_feedback = isempty(blocks) ? zeros(T, C, 0) : reduce(hcat, blocks)
    return DFAChain(layers, direct_feedback)
end

DFAChain(chain::Flux.Chain; kw...) = DFAChain(chain.layers...; kw...)

Flux.@layer DFAChain trainable=(layers,)

"""The `DenseFA` and `ConvFA` layers of `layers`, bottom first (the last one is the top)."""
_fa_layers(layers::Tuple) = Tuple(l for l in layers if l isa FALayer)

_layer_name(l) = l isa Function ? string(l) : string(nameof(typeof(l)))

function _check_dfa_kinds(layers::Tuple)
    isempty(layers) && throw(ArgumentError("DFAChain needs at least one DenseFA or ConvFA layer"))
    for (i, l) in enumerate(layers)
        l isa Union{FALayer, DFAStructure} || throw(ArgumentError(string(
            "DFAChain takes DenseFA and ConvFA layers, with pooling (MeanPool, MaxPool, their ",
            "adaptive and global forms) and Flux.flatten between them; layer ", i, " is ",
            _layer_name(l), " (put an activation inside its layer, as σ)")))
    end
    last(layers) isa FALayer || throw(ArgumentError(string(
        "DFAChain: the last layer must be a DenseFA or ConvFA (the top, whose pre-activation ",
        "error every hidden layer hears); got ", _layer_name(last(layers)))))
    return nothing
end

function _check_dfa_layers(layers::Tuple, direct_feedback::AbstractMatrix)
    _check_dfa_kinds(layers)
    for i in 2:length(layers)
        a, b = layers[i - 1], layers[i]
        a isa DenseFA && b isa DenseFA && size(b.weight, 2) != size(a.weight, 1) &&
            throw(DimensionMismatch(string(
                "DFAChain: layer ", i, " (", b, ") takes ", size(b.weight, 2), " inputs but layer ",
                i - 1, " (", a, ") gives ", size(a.weight, 1))))
    end
    params = _fa_layers(layers)
    hidden, top = Base.front(params), last(params)
    # What can be checked without an input: C for a dense top, Σ units when every hidden layer is
    # dense. The rest (conv units) is checked by dfa_output on every forward pass.
    C = top isa DenseFA ? size(top.weight, 1) : size(direct_feedback, 1)
    units = all(l -> l isa DenseFA, hidden) ? sum(_known_units, hidden; init = 0) :
            size(direct_feedback, 2)
    size(direct_feedback) == (C, units) || throw(DimensionMismatch(string(
            "DFAChain: direct_feedback must be (C, Σ units_l) = ", (C, units), ": C = ", C,
            " outputs of the top layer, hidden units ", map(_known_units, hidden), "; got ",
            size(direct_feedback))))
    return nothing
end

_known_units(l::DenseFA) = size(l.weight, 1)
_known_units(l::ConvFA) = "?"  # depends on the input size

"""`(C, (units_1, units_2, …))` of a DFA chain: measured by a forward pass on a zero sample of
size `input_size`, or, without it, read from the weights (dense layers only)."""
function _dfa_units(layers::Tuple, input_size)
    params = _fa_layers(layers)
    hidden, top = Base.front(params), last(params)
    if input_size === nothing
        isempty(hidden) && return (top isa DenseFA ? size(top.weight, 1) : 0, ())
        all(l -> l isa DenseFA, params) && return (size(top.weight, 1), map(_known_units, hidden))
        throw(ArgumentError(string(
            "DFAChain: a chain with ConvFA layers needs input_size, the size of one sample ",
            "((W, H, channels) for images): the number of outputs of a conv layer, and so the ",
            "shape of its direct feedback matrix, depends on it")))
    end
    sizes = _output_sizes(layers, input_size)
    return (prod(last(sizes)), Tuple(prod(s) for s in sizes[1:(end - 1)]))
end

"""The output size per sample (without the batch) of each `DenseFA`/`ConvFA` of `layers`, bottom
first, from a forward pass on one zero sample of size `input_size`."""
function _output_sizes(layers::Tuple, input_size)
    sample = input_size isa Integer ? (input_size,) : input_size
    sample isa Tuple && !isempty(sample) && all(s -> s isa Integer && s >= 1, sample) ||
        throw(ArgumentError("DFAChain: input_size must be one sample's size (integers ≥ 1), got $input_size"))
    h = zeros(eltype(last(layers).weight), sample..., 1)
    sizes = Tuple{Vararg{Int}}[]
    for l in layers
        h = l(h)
        l isa FALayer && push!(sizes, Base.front(size(h)))
    end
    return sizes
end

"""
    direct_feedback_of(model::DFAChain, l; input_size=nothing) -> B_l

The fixed matrix through which the `l`-th hidden layer (`1 ≤ l <` the number of `DenseFA` and
`ConvFA` layers) hears the network's output error: a view into `model.direct_feedback`, shaped
`(C, output size per sample...)`: `C × out` for a `DenseFA`, `C × W_out × H_out × out_channels`
for a 2-d `ConvFA`. Where a `ConvFA` lies at or below layer `l`, its output size depends on the
data: give `input_size`, one sample's size, as to the constructor.
"""
function direct_feedback_of(m::DFAChain, l::Integer; input_size = nothing)
    hidden = Base.front(_fa_layers(m.layers))
    1 <= l <= length(hidden) || throw(ArgumentError(string(
        "DFAChain has hidden layers 1 to ", length(hidden), "; got ", l)))
    sizes = if input_size === nothing
        all(h -> h isa DenseFA, hidden[1:l]) || throw(ArgumentError(string(
            "direct_feedback_of: a ConvFA at or below hidden layer ", l, " has outputs that ",
            "depend on the input size: pass input_size")))
        map(h -> (size(h.weight, 1),), hidden[1:l])
    else
        _output_sizes(m.layers, input_size)[1:l]
    end
    start = sum(prod, sizes[1:(l - 1)]; init = 0)
    columns = view(m.direct_feedback, :, (start + 1):(start + prod(sizes[l])))
    return reshape(columns, size(m.direct_feedback, 1), sizes[l]...)
end

function (m::DFAChain)(x::AbstractArray)
    h, above = _dfa_first(m.layers, x)  # the first layer's own rule: its input gets its FA signal
    isempty(above) && return h          # one DenseFA/ConvFA, on top: an FA chain
    return _dfa_walk(above, h, (h,), m.direct_feedback)
end

# The walk, with only `first`, `Base.tail` and splatting of tuples, which every AD backend
# differentiates. `_dfa_first`: the layers up to and including the first DenseFA/ConvFA run as
# they are; returns its output and the layers above it.
_dfa_first(layers::Tuple, x) = _dfa_first(first(layers), Base.tail(layers), x)
_dfa_first(l::FALayer, above::Tuple, x) = (l(x), above)
_dfa_first(l, above::Tuple, x) = _dfa_first(above, l(x))

# Above the first layer: `h` is the current activation, `hidden` the hidden layers' outputs so far.
_dfa_walk(layers::Tuple{Any}, h, hidden::Tuple, D) = _dfa_top(first(layers), h, hidden, D)
_dfa_walk(layers::Tuple, h, hidden::Tuple, D) =
    _dfa_step(first(layers), Base.tail(layers), h, hidden, D)

function _dfa_step(l::FALayer, above::Tuple, h, hidden::Tuple, D)
    y = l.σ.(_dfa_preactivation(l, h))  # a hidden layer: reads its input without sending back
    return _dfa_walk(above, y, (hidden..., y), D)
end
_dfa_step(l, above::Tuple, h, hidden::Tuple, D) = _dfa_walk(above, l(h), hidden, D)

_dfa_top(top::FALayer, h, hidden::Tuple, D) =
    top.σ.(dfa_output(_dfa_preactivation(top, h), D, hidden...))

function _dfa_preactivation(a::DenseFA, x::AbstractVecOrMat)
    _check_input(a, x)
    return dfa_matmul(a.weight, x) .+ a.bias
end
_dfa_preactivation(a::DenseFA, x::AbstractArray) = throw(DimensionMismatch(string(
    "DFAChain: ", a, " gets ", summary(x), "; inside a DFAChain a DenseFA takes features × batch ",
    "(put Flux.flatten before it)")))

function _dfa_preactivation(c::ConvFA, x::AbstractArray)
    _check_input(c, x)
    return dfa_conv(x, c.weight, _conv_dims(c, x)) .+ _conv_bias(c)
end

function Base.show(io::IO, m::DFAChain)
    print(io, "DFAChain(")
    join(io, m.layers, ", ")
    print(io, "; direct_feedback=", join(size(m.direct_feedback), "×"), ")")
end
