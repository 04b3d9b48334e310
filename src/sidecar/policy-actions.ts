import { channels, type PolicyAction } from '../core/channels.js';

const actionChannel = channels.policyAction;

/** What a resilience policy did to one request, for src/telemetry/ (isthmus_policy_actions_total). */
export function publishPolicyAction(origin: object, service: string | undefined, action: PolicyAction, policy: string | undefined): void {
  if (actionChannel.hasSubscribers) actionChannel.publish({ origin, service, action, policy });
}
