"""The reference CURL update order, rebuilt from our modules, as the benchmark's baseline.

The official CURL agent (which the LeVER reference code extends) runs, per update: the critic
step (actor on next obs through its tied encoder, target critic on next obs, critic on obs with
gradients), the actor step every 2nd update (actor and critic on obs again, conv detached), and
the CURL step (critic encoder on the anchor with gradients, target encoder on the positive), each
with its own optimizer (the encoder is stepped by three). Same networks, same batch, same crops:
only the order and the number of passes differ from ``SacCurlAgent.update``, so the timing ratio
isolates what sharing the conv forward saves. Used only by ``update_speed.py``; not a product.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from lever_transfer.agents.networks import soft_update
from lever_transfer.agents.sac_curl import SacCurlAgent
from lever_transfer.augment import random_crop


def reference_update(agent: SacCurlAgent, batch, step: int) -> None:
    enc, actor_enc, crop, g = agent.critic_encoder, agent.actor_encoder, agent.crop, agent.generator
    obs_raw = torch.as_tensor(batch.obs)
    obs = random_crop(obs_raw, crop, g)
    pos = random_crop(obs_raw, crop, g)
    nxt = random_crop(torch.as_tensor(batch.next_obs), crop, g)
    action = torch.as_tensor(batch.action)
    reward = torch.as_tensor(batch.reward)[:, None]
    discount = torch.as_tensor(batch.discount)[:, None] * agent.cfg.discount
    c = agent.num_shared
    # critic step
    with torch.no_grad():
        _, next_pi, next_log_pi = agent.actor(actor_enc(nxt))
        target_q = torch.min(*agent.target_critic(agent.target_encoder(nxt), next_pi))
        target = reward + discount * (target_q - agent.alpha * next_log_pi)
    q1, q2 = agent.critic(enc(obs), action)
    agent.critic_opt.zero_grad()
    (F.mse_loss(q1, target) + F.mse_loss(q2, target)).backward()
    agent.critic_opt.step()
    # actor step (encoder detached after the convs, as CURL's detach_encoder=True)
    if step % 2 == 0:
        with torch.no_grad():
            h_actor, h_critic = enc(obs, 0, c), enc(obs, 0, c)  # two separate encoder calls
        _, pi, log_pi = agent.actor(actor_enc(h_actor, c))
        actor_q = torch.min(*agent.critic(enc(h_critic, c), pi))
        actor_loss = (agent.alpha.detach() * log_pi - actor_q).mean()
        agent.actor_opt.zero_grad()
        actor_loss.backward()
        agent.actor_opt.step()
        soft_update(agent.critic, agent.target_critic, 0.01)
        soft_update(enc, agent.target_encoder, 0.05)
    # CURL step
    z_a = enc(obs)
    with torch.no_grad():
        z_pos = agent.target_encoder(pos)
    logits = z_a @ agent.curl_w @ z_pos.T
    loss = F.cross_entropy(logits - logits.max(1, keepdim=True).values, torch.arange(len(z_a)))
    agent.critic_opt.zero_grad()
    agent.curl_opt.zero_grad()
    loss.backward()
    agent.critic_opt.step()  # stands in for CURL's encoder and cpc optimizers (two more steps)
    agent.curl_opt.step()
